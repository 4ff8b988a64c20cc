"""An open-loop HTTP load generator: request i is due at start + i/rate whether or not earlier
ones have answered, and its latency counts from when it was due (no coordinated omission).

A small HTTP/1.1 keep-alive client over asyncio streams, because a full client library would
spend more of this 2-core machine's CPU than the server under test."""

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HttpPool:
    """Keep-alive connections to one origin; a request takes an idle one or opens another."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.headers = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        self.timeout = timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self, method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        head = {**self.headers, **(headers or {}), "Content-Length": str(len(payload))}
        if body is not None:
            head["Content-Type"] = "application/json"
        raw = (
            f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        ).encode() + payload
        conn = self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
        try:
            status, data, keep = await asyncio.wait_for(self._exchange(conn, raw), self.timeout)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn[1].close()
        return status, data

    @staticmethod
    async def _exchange(conn, raw: bytes) -> tuple[int, bytes, bool]:
        reader, writer = conn
        writer.write(raw)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        if fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                chunks.append((await reader.readexactly(size + 2))[:-2])
            await reader.readuntil(b"\r\n")
            data = b"".join(chunks)
        else:
            data = await reader.readexactly(int(fields.get("content-length", 0)))
        return status, data, fields.get("connection", "").lower() != "close"

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


@dataclass
class LoadResult:
    rate: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)  # HTTP status or exception name → count
    sent: int = 0
    bodies: list[bytes] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.sent if self.sent else 0.0


async def open_loop(
    send, rate: float, seconds: float, *, ok=lambda status: status < 400, keep_bodies: bool = False
) -> LoadResult:
    """Call `send()` (→ (status, body)) `rate` times a second for `seconds`, open loop."""
    loop = asyncio.get_running_loop()
    result = LoadResult(rate)
    start = loop.time() + 0.02

    async def one(due: float) -> None:
        try:
            status, body = await send()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.errors += 1
            result.error_kinds[type(exc).__name__] += 1
            return
        if not ok(status):
            result.errors += 1
            result.error_kinds[status] += 1
            return
        result.latencies.append(loop.time() - due)
        if keep_bodies:
            result.bodies.append(body)

    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
        result.sent += 1
    await asyncio.gather(*tasks)
    return result
