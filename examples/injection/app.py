"""A notes API wired by types: a database pool, an HTTP client and the API service.

Nobody lists dependencies by hand: ``Api`` asks for a ``DbPool`` and an ``HttpClient``
in its ``__init__``, the container builds them (with their config sections, loaded
from ``app.toml`` and ``APP_*`` environment variables) and starting ``Api`` starts
them first. ``script.py`` reuses the same components and starts only the pool.

    python examples/injection/app.py            # serve until Ctrl-C
    APP_API_PORT=9000 python examples/injection/app.py
    curl http://127.0.0.1:8080/notes
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import tether

HERE = Path(__file__).resolve().parent


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    path: str = "notes.db"
    pool_size: int = 2


@tether.section("http")
@dataclasses.dataclass
class HttpConfig:
    timeout: dt.timedelta = dt.timedelta(seconds=5)
    user_agent: str = "notes-example"


@tether.section("api")
@dataclasses.dataclass
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream: str = ""


class DbPool(tether.Service):
    """A small pool of SQLite connections, used from worker threads."""

    def __init__(self, config: DbConfig) -> None:
        self.config = config
        self.connections: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()

    async def start(self) -> None:
        path = Path(self.config.path)
        if not path.is_absolute():
            path = HERE / path
        for _ in range(self.config.pool_size):
            connection = sqlite3.connect(path, check_same_thread=False)
            self.connections.put_nowait(connection)
        await self.execute("create table if not exists notes (text text not null)")
        print(f"db: {self.config.pool_size} connections to {path.name}")

    async def stop(self) -> None:
        while not self.connections.empty():
            self.connections.get_nowait().close()
        print("db: closed")

    async def execute(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        connection = await self.connections.get()
        try:
            return await asyncio.to_thread(self._run, connection, sql, params)
        finally:
            self.connections.put_nowait(connection)

    @staticmethod
    def _run(
        connection: sqlite3.Connection, sql: str, params: tuple[object, ...]
    ) -> list[tuple[object, ...]]:
        with connection:
            return connection.execute(sql, params).fetchall()


class HttpClient(tether.Service):
    """A minimal HTTP/1.1 GET client over asyncio streams."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config

    async def start(self) -> None:
        print(f"http: client ready (timeout {self.config.timeout.total_seconds():g}s)")

    async def stop(self) -> None:
        print("http: client closed")

    async def get(self, url: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        async with asyncio.timeout(self.config.timeout.total_seconds()):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = (
                    f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\n"
                    f"User-Agent: {self.config.user_agent}\r\nConnection: close\r\n\r\n"
                )
                writer.write(request.encode())
                response = await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split()[1]), body


class Api(tether.Service):
    """GET /notes lists the notes; GET /upstream fetches the configured upstream URL."""

    def __init__(self, db: DbPool, client: HttpClient, config: ApiConfig) -> None:
        self.db = db
        self.client = client
        self.config = config
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, self.config.host, self.config.port)
        self.port = self.server.sockets[0].getsockname()[1]
        print(f"api: listening on http://{self.config.host}:{self.port}")

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        print("api: stopped")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            while (await reader.readline()).strip():
                pass  # headers
            path = request_line.split()[1].decode() if request_line.strip() else "/"
            status, body = await self.route(path)
            writer.write(
                f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    async def route(self, path: str) -> tuple[int, bytes]:
        if path == "/notes":
            rows = await self.db.execute("select text from notes order by rowid")
            return 200, json.dumps([text for (text,) in rows]).encode()
        if path == "/upstream" and self.config.upstream:
            status, body = await self.client.get(self.config.upstream)
            return 200, json.dumps({"status": status, "body": body.decode()}).encode()
        return 404, b'{"error": "not found"}'


def build_container(environ: Mapping[str, str] | None = None) -> tether.Container:
    """The application's container: config from app.toml, then APP_* variables."""
    config = tether.Config().add_toml(HERE / "app.toml").add_env("APP", environ=environ)
    return tether.Container(config=config)


async def main() -> None:
    container = build_container()
    async with container:
        api = container.get(Api)  # Api, DbPool and HttpClient, wired by their types
        await api.run()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
