"""drain_after_reset.py HOST PORT: an asyncio client that writes and drains in a loop
to a server that accepted and closed; prints the error that ends the loop (and how
many writes it took, bounded) or "no error"."""
import asyncio
import sys


async def main():
    reader, writer = await asyncio.open_connection(sys.argv[1], int(sys.argv[2]))
    await asyncio.sleep(0.3)               # the server has closed by now
    try:
        for i in range(2000):
            writer.write(b"x" * 65536)
            await asyncio.wait_for(writer.drain(), 10)
        print("no error")
    except (ConnectionResetError, BrokenPipeError) as exc:
        print("ended by", type(exc).__name__)
    except asyncio.TimeoutError:
        print("hung in drain")
    writer.close()


asyncio.run(main())
