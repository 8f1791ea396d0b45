"""Pass an mkstack socket between programs with SCM_RIGHTS:
fd_pass.py give DIR PORT: binds UDP 0.0.0.0:PORT, hands it to the first client of
DIR/pass.sock, closes its own descriptor. fd_pass.py take DIR: receives it, then
answers one datagram on it ("taken: <data>")."""
import os
import socket
import sys

mode, d = sys.argv[1], sys.argv[2]
path = os.path.join(d, "pass.sock")
if mode == "give":
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", int(sys.argv[3])))
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen()
    print("ready", flush=True)
    c, _ = lst.accept()
    socket.send_fds(c, [b"a udp socket"], [udp.fileno()])
    udp.close()
    print("passed", flush=True)
    c.recv(1)
else:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    msg, fds, _, _ = socket.recv_fds(c, 100, 1)
    udp = socket.socket(fileno=fds[0])
    print("ready", msg, udp.family, udp.type, udp.getsockname()[1], flush=True)
    data, addr = udp.recvfrom(100)
    udp.sendto(b"taken: " + data, addr)
    print("answered", data, flush=True)
