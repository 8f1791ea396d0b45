"""accept_close.py PORT: accepts every connection and closes it at once, unread.
Prints "ready" once it listens."""
import sys

from transcript import listener

s = listener(int(sys.argv[1]))
while True:
    c, _ = s.accept()
    c.close()
