"""TAP offloads ([driver] offload): 64 KB TSO segments each way, checksums left partial."""

import pytest

from tests.system.conftest import DEFAULT_CONFIG, _running
from tests.system.test_tcp import SIZE, curl_download, files, servers, sha, urllib_download  # noqa: F401


def offload_config(path) -> str:
    text = open(DEFAULT_CONFIG).read()
    text = text.replace("offload = false", "offload = true").replace("rmem = 212992 ", "rmem = 1048576 ")
    assert "offload = true" in text and "rmem = 1048576" in text
    path.write_text(text)
    return str(path)


@pytest.fixture
def stack(tmp_path_factory):
    yield from _running(offload_config(tmp_path_factory.mktemp("cfg") / "offload.toml"))


def test_tso_both_ways_byte_exact_and_faster(stack, servers, tmp_path):  # noqa: F811 (fixtures)
    _, digest = servers
    code, down = curl_download(stack, tmp_path / "got")                # mkstack -> kernel: our TSO segments
    assert code == "200" and sha(tmp_path / "got") == digest
    n, got, up = urllib_download(stack)                                 # kernel -> mkstack: the kernel's
    assert n == SIZE and got == digest
    st = stack.stats()
    assert st["driver"]["rx_large"] > 100 and st["tcp"]["TcpOutTsoSegs"] > 100
    assert st["tcp"].get("TcpInCsumErrors", 0) == 0
    print(f"\n50 MB with offloads: mkstack -> kernel {down:.1f} MB/s, kernel -> mkstack {up:.1f} MB/s")
