"""Opens N idle MQTT 3.1.1 sessions over TLS and holds them (bench/tls.sh).

Usage: tls_idle.py HOST PORT CAFILE COUNT TOKEN_PREFIX|- HOLD_SECONDS READY_FILE
Each session sends CONNECT (user name TOKEN_PREFIX<i>, or anonymous with "-") and waits for CONNACK;
when all are accepted it writes the count to READY_FILE, then holds them for HOLD_SECONDS. Exit 1
when a session is refused or fails. Standard library only.
"""

import asyncio
import ssl
import struct
import sys


def connect_packet(client_id: str, user: str | None) -> bytes:
    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("!H", len(raw)) + raw

    flags = 0x02 | (0x80 if user else 0)
    body = s("MQTT") + bytes([4, flags]) + struct.pack("!H", 300) + s(client_id)
    if user:
        body += s(user)
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


async def session(i, host, port, ctx, prefix):
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    user = None if prefix == "-" else f"{prefix}{i}"
    writer.write(connect_packet(f"tls-idle-{i}", user))
    await writer.drain()
    ack = await asyncio.wait_for(reader.readexactly(4), 30)
    if ack[0] != 0x20 or ack[3] != 0:
        raise RuntimeError(f"session {i}: CONNACK {ack.hex()}")
    return reader, writer


async def main():
    host, port, cafile, count, prefix, hold, ready = sys.argv[1:8]
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    sem = asyncio.Semaphore(64)

    async def one(i):
        async with sem:
            return await session(i, host, int(port), ctx, prefix)

    sessions = await asyncio.gather(*(one(i) for i in range(int(count))))
    with open(ready, "w") as f:
        f.write(str(len(sessions)))
    await asyncio.sleep(float(hold))
    for _, writer in sessions:
        writer.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # a refused or failed session ends the run with a message
        print(f"tls_idle: {e}", file=sys.stderr)
        sys.exit(1)
