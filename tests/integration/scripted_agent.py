#!/usr/bin/env python3
"""scripted_agent.py: a HAProxy agent-check responder for tests.

Each connection gets the text in the control file (re-read per
connection) followed by a newline, then the connection is closed.  The
special texts "<silent>" (accept, say nothing, keep the connection open)
and "<huge>" (2000 octets) make it misbehave.  Usage:
    scripted_agent.py --port 0 --control FILE --ready FILE
It writes {"port": N} to the ready file once listening and a line to
`hits` beside it for every connection.  Loopback only.
"""

import argparse
import asyncio
import json
import os


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control", required=True)
    p.add_argument("--ready", required=True)
    a = p.parse_args()

    hits = os.path.join(os.path.dirname(a.ready), "hits")

    async def handle(reader, writer):
        with open(hits, "a") as f:  # one line per poll, for tests to wait on
            f.write("x\n")
        try:
            with open(a.control) as f:
                text = f.read().strip("\n")
        except OSError:
            text = "up"
        try:
            if text == "<silent>":
                await asyncio.sleep(30)
            elif text == "<huge>":
                writer.write(b"up " * 700 + b"\n")
                await writer.drain()
            else:
                writer.write(text.encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", a.port)
    port = server.sockets[0].getsockname()[1]
    tmp = a.ready + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"port": port, "pid": os.getpid()}, f)
    os.rename(tmp, a.ready)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
