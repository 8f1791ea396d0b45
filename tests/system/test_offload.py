"""TAP offloads ([driver] offload, on by default): 64 KB TSO segments each way, checksums left partial."""

from tests.system.test_tcp import SIZE, curl_download, files, servers, sha, urllib_download  # noqa: F401


def test_tso_both_ways_byte_exact(stack, servers, tmp_path):  # noqa: F811 (fixtures)
    _, digest = servers
    code, down = curl_download(stack, tmp_path / "got")                # mkstack -> kernel: our TSO segments
    assert code == "200" and sha(tmp_path / "got") == digest
    n, got, up = urllib_download(stack)                                 # kernel -> mkstack: the kernel's
    assert n == SIZE and got == digest
    st = stack.stats()
    assert st["driver"]["rx_large"] > 100 and st["tcp"]["TcpOutTsoSegs"] > 100
    assert st["tcp"].get("TcpInCsumErrors", 0) == 0 and st["socket_server"].get("bad_messages", 0) == 0
    print(f"\n50 MB with offloads: mkstack -> kernel {down:.1f} MB/s, kernel -> mkstack {up:.1f} MB/s")
