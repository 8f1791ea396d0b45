"""The socket layer (sys_socketcall), hosted by services/socket_server.py.

types      plain Sock, Client, Pending: import nothing of the layer
core       calls in, replies and messages out; the family table
clients    client processes and their descriptor tables
options    setsockopt/getsockopt, ioctl
dgram      UDP sockets, and the datagram queue every datagram socket shares
stream     TCP sockets: the application's side of a connection
tcp_events TCP sockets: what tcp tells of a connection (TCP_EVENTS, results)
unix       AF_UNIX stream and datagram sockets, SCM_RIGHTS
raw        SOCK_RAW sockets
records    the state saved each turn, read back by a restarted server
ledger     what each user holds (sockets, calls, memory, skbs)
credentials the calling process's uid, gid and capabilities, from /proc
"""
