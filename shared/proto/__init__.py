"""Sans-IO protocol engines: state machines that take input and ``now`` and
return actions. No sockets, clocks, threads or processes in here."""
