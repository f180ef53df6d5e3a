"""A third-party permessage-deflate (RFC 7692) echo server for wsfleet's tests: Python's
`websockets`, which negotiates deflate by default.

Binds 127.0.0.1 on a port the kernel picks and prints `port <n>`. Echoes every message. When its
standard input closes (or reads a line), it prints its own counts and exits:
`counts <messages received> <payload bytes received> <messages sent> <payload bytes sent>`,
payload bytes being the uncompressed payload (UTF-8 bytes for text).

Usage: deflate_echo.py [--decline]   (--decline: answer no extension, serve plain WebSocket)
"""

import asyncio
import sys

from websockets.asyncio.server import serve

counts = {"received": 0, "received_bytes": 0, "sent": 0, "sent_bytes": 0}


def payload_len(message):
    return len(message.encode("utf-8")) if isinstance(message, str) else len(message)


async def echo(websocket):
    async for message in websocket:
        counts["received"] += 1
        counts["received_bytes"] += payload_len(message)
        await websocket.send(message)
        counts["sent"] += 1
        counts["sent_bytes"] += payload_len(message)


async def main():
    compression = None if "--decline" in sys.argv[1:] else "deflate"
    async with serve(echo, "127.0.0.1", 0, compression=compression, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
    print(
        f"counts {counts['received']} {counts['received_bytes']} {counts['sent']} {counts['sent_bytes']}",
        flush=True,
    )


asyncio.run(main())
