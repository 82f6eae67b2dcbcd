"""A small HTTP/1.1 client over asyncio streams, for tests that need no framework.

One request per connection (``Connection: close``), every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import bounded


class Response:
    """Status, headers (lower-case names) and body of one response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:60]!r}>"


async def fetch(
    url: str, *, method: str = "GET", body: bytes = b"", seconds: float = 5.0
) -> Response:
    """``method url`` and its response; raises on a connection error or a timeout."""
    return await bounded(_fetch(url, method, body), seconds)


async def _fetch(url: str, method: str, body: bytes) -> Response:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    reader, writer = await asyncio.open_connection(host, parts.port or 80)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD":
            content = b""
        elif "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        else:
            content = await reader.read()
        return Response(status, headers, content)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
