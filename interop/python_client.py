"""wss:// interop check with Python's `websockets` (an independent client).

Usage: python_client.py URL CA_FILE

Trusts only CA_FILE (the test CA); echoes text, 1 MiB of binary, 200
pipelined messages and a fragmented message; checks the TLS version, ALPN
and permessage-deflate agreement, then closes with 1000. Exit 0 when every
check passed.
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect


async def main(url, ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    async with connect(url, ssl=ctx, max_size=1 << 24) as ws:
        tls = ws.transport.get_extra_info("ssl_object")
        print("python websockets: TLS", tls.version(), "ALPN", tls.selected_alpn_protocol(),
              "extensions", ws.response.headers.get("Sec-WebSocket-Extensions"))
        assert tls.selected_alpn_protocol() == "http/1.1"
        await ws.send("hello over wss")
        assert await ws.recv() == "hello over wss"
        big = os.urandom(1 << 20)
        await ws.send(big)
        assert await ws.recv() == big
        for i in range(200):
            await ws.send("msg %d" % i)
        for i in range(200):
            assert await ws.recv() == "msg %d" % i
        # A message in fragments (websockets sends an iterable as fragments).
        await ws.send(["frag-%d " % i for i in range(50)])
        assert await ws.recv() == "".join("frag-%d " % i for i in range(50))
        await ws.ping(b"p")
        await ws.close(1000, "done")
        assert ws.close_code == 1000, ws.close_code
    print("python websockets: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
