import os

import pytest

from shared.config import ConfigError, check_instance, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "configs", "default.toml")


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


def variant(tmp_path, old, new):
    text = open(DEFAULT).read()
    assert old in text
    return write(tmp_path, text.replace(old, new))


def test_default_config_loads():
    cfg = load(DEFAULT)
    assert cfg.services == ["driver", "netdev", "ip", "udp", "tcp", "socket_server"]
    assert str(cfg.devices[0].addr) == "10.66.0.2/24"
    assert cfg.devices[0].netns("x") == "mkstack-x"


@pytest.mark.parametrize("old,new,key", [
    ('addr = "10.66.0.2/24"', 'addr = "10.66.0.300/24"', "devices[0].addr"),
    ('addr = "10.66.0.2/24"\n', "", "devices[0].addr: missing"),
    ('mtu = 1500', 'mtu = "big"', "devices[0].mtu: expected int"),
    ('mtu = 1500', 'mtu = 10', "devices[0].mtu"),
    ('mac = "02:6d:6b:00:00:02"', 'mac = "zz"', "devices[0].mac"),
    ('peer_addr = "10.66.0.1/24"', 'peer_addr = "10.99.0.1/24"', "devices[0].peer_addr"),
    ('dev = "tap0"', 'dev = "tap9"', "routes[0].dev"),
    ('budget = 64', 'budget = 0', "driver.budget"),
    ('heartbeat_timeout = 3.0', 'heartbeat_timeout = true', "supervisor.heartbeat_timeout"),
    ('budget = 64', 'budget = 64\n[netfilter]\nrules = ["FORWARD -j DROP", "INPUT -p tcp --dport x -j DROP"]',
     "netfilter.rules[1]: --dport"),
    ('peer_netns = "mkstack-{instance}"', 'peer_netns = "mkstack-{instance}"\npeer_routes = ["10.1.0.0/33"]',
     "devices[0].peer_routes[0]"),
    ('local_port_range', 'forwarding = "yes"\nlocal_port_range', "ip.forwarding: expected bool"),
    ('peer_addr = "10.66.0.1/24"', 'peer_addr = "10.66.0.1/24"\naddr6 = "fd66::2/64"', "devices[0].addr6/peer_addr6"),
    ('peer_addr = "10.66.0.1/24"', 'peer_addr = "10.66.0.1/24"\naddr6 = "fd66::2/64"\npeer_addr6 = "fd67::1/64"',
     "devices[0].addr6/peer_addr6"),
    ('peer_addr = "10.66.0.1/24"', 'peer_addr = "10.66.0.1/24"\naddr6 = "fd66::2/129"\npeer_addr6 = "fd66::1/64"',
     "devices[0].addr6"),
    ('via = "10.66.0.1"', 'via = "fd66::1"', "routes[0].via: an IPv6 gateway for an IPv4 destination"),
    ('dst = "0.0.0.0/0"', 'dst = "::/0"', "routes[0].via: an IPv4 gateway for an IPv6"),
    ('dst = "0.0.0.0/0"\nvia = "10.66.0.1"', 'dst = "::/0"\nvia = "fd66::1"', "routes[0].dev: tap0 has no addr6"),
])
def test_errors_name_the_key(tmp_path, old, new, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(variant(tmp_path, old, new))


def test_ipv6_config_loads():
    d = load(os.path.join(ROOT, "configs", "ipv6.toml")).devices[0]
    assert (str(d.addr6), str(d.peer_addr6)) == ("fd66::2/64", "fd66::1/64")
    assert load(DEFAULT).devices[0].addr6 is None            # IPv6 stays off on the default link for now


def test_router_config_loads():
    cfg = load(os.path.join(ROOT, "configs", "router.toml"))
    assert cfg.forwarding and [d.name for d in cfg.devices] == ["tap0", "tap1"]
    assert cfg.services[:2] == ["driver", "driver-tap1"] and cfg.devices[1].netns("x") == "mkstack-x-b"
    assert [str(n) for n in cfg.devices[0].peer_routes] == ["10.67.0.0/24"]


def test_unparseable_toml(tmp_path):
    with pytest.raises(ConfigError, match="c.toml"):
        load(write(tmp_path, "[devices\n"))


def test_instance_names():
    assert check_instance("t1-a_b") == "t1-a_b"
    for bad in ("", "-x", "A", "a" * 30, "a/b"):
        with pytest.raises(ConfigError):
            check_instance(bad)
