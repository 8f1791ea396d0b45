"""Frames captured from the Linux kernel, shared by the wire and capture tests."""

# Captured on tap0 with tcpdump: the Linux kernel (10.66.0.1) ARPs for mkstack
# (10.66.0.2) and pings it with `ping -c 1 -s 8 -p 0001020304050607`.
GOLDEN_ARP = bytes.fromhex(
    "ffffffffffff" "e2a95b91d81d" "0806"
    "0001" "0800" "06" "04" "0001" "e2a95b91d81d" "0a420001" "000000000000" "0a420002")
GOLDEN_PING_FRAME = bytes.fromhex(
    "026d6b000002" "e2a95b91d81d" "0800"
    "45000024" "27544000" "4001" "fefe" "0a420001" "0a420002"
    "0800" "ddc1" "0e2d0001" "0001020304050607")
