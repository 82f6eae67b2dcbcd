"""tether's demo: a key-value line server on localhost, backed by SQLite.

Run it with ``make demo`` (or ``python examples/demo.py --help``) and talk to it::

    $ nc 127.0.0.1 7878
    SET greeting hello
    OK
    GET greeting
    VALUE hello
    STATS
    STATS connections=1 commands=3 keys=1

Three services, declared once:

* ``Store``: a SQLite database, a BlockingService (its hooks run in a worker thread);
* ``Stats``: counters, with a timer that reports them every few seconds;
* ``LineServer``: the TCP server; it needs the store and the stats.

They start in dependency order (store and stats concurrently, then the server) and on
Ctrl-C (or SIGTERM) stop in reverse: the server closes its connections first, the
store closes the database last. Every step is printed as it happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import tether


class Store(tether.BlockingService):
    """Key-value pairs in a SQLite file; blocking calls, safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def start(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)")
        self._db.commit()

    def stop(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not running")
        return self._db

    def put(self, key: str, value: str) -> None:
        with self._lock:
            db = self._conn()
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
            db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._conn().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def delete(self, key: str) -> bool:
        with self._lock:
            db = self._conn()
            deleted = db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount
            db.commit()
        return deleted > 0

    def keys(self) -> list[str]:
        with self._lock:
            return [str(r[0]) for r in self._conn().execute("SELECT key FROM kv ORDER BY key")]


class Stats(tether.Service):
    """Counts connections and commands; reports them on a fixed schedule."""

    def __init__(self, store: Store, every: float) -> None:
        self.store = store
        self.every = every
        self.connections = 0
        self.commands = 0

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        return [self.store]

    def line(self, keys: int) -> str:
        return f"connections={self.connections} commands={self.commands} keys={keys}"

    @tether.timer(lambda self: self.every)  # every N seconds, from the command line
    async def report(self) -> None:
        keys = len(await asyncio.to_thread(self.store.keys))
        print(f"[stats] {self.line(keys)}", flush=True)


class LineServer(tether.Service):
    """A line protocol over TCP: SET k v, GET k, DEL k, KEYS, STATS, QUIT."""

    def __init__(self, store: Store, stats: Stats, host: str, port: int) -> None:
        self.store = store
        self.stats = stats
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @property
    def dependencies(self) -> list[Any]:
        return [[self.store, self.stats]]  # both needed, independent: start together

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port} (try: nc {host} {port})", flush=True)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()  # stop accepting
        for writer in self._clients.values():  # tell connected clients, then close
            with contextlib.suppress(ConnectionError):
                writer.write(b"BYE server stopping\n")
                writer.close()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        self.stats.connections += 1
        try:
            while line := await reader.readline():
                reply = await self._answer(line.decode(errors="replace").strip())
                if reply is None:
                    break
                writer.write(reply.encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            del self._clients[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: str) -> str | None:
        """The reply to one command line; None closes the connection."""
        self.stats.commands += 1
        command, _, rest = line.partition(" ")
        handler = {
            "SET": self._set,
            "GET": self._get,
            "DEL": self._delete,
            "KEYS": self._keys,
            "STATS": self._stats,
            "QUIT": self._quit,
        }.get(command.upper())
        if handler is None:
            return "ERR commands: SET key value | GET key | DEL key | KEYS | STATS | QUIT"
        return await handler(rest)

    async def _set(self, rest: str) -> str:
        key, _, value = rest.partition(" ")
        if not key or not value:
            return "ERR usage: SET key value"
        await asyncio.to_thread(self.store.put, key, value)
        return "OK"

    async def _get(self, key: str) -> str:
        value = await asyncio.to_thread(self.store.get, key)
        return "NOTFOUND" if value is None else f"VALUE {value}"

    async def _delete(self, key: str) -> str:
        return "OK" if await asyncio.to_thread(self.store.delete, key) else "NOTFOUND"

    async def _keys(self, _: str) -> str:
        return "KEYS " + " ".join(await asyncio.to_thread(self.store.keys))

    async def _stats(self, _: str) -> str:
        keys = len(await asyncio.to_thread(self.store.keys))
        return f"STATS {self.stats.line(keys)}"

    async def _quit(self, _: str) -> None:
        return None


def print_step(event: tether.LifecycleEvent) -> None:
    """Print each lifecycle step as it happens."""
    if event.kind is tether.EventKind.STATE and event.service is not None:
        name = type(event.service).__name__
        took = f" ({event.duration * 1000:.2f} ms)" if event.duration is not None else ""
        error = f": {event.error!r}" if event.error else ""
        print(f"  {name:<11} {event.state}{took}{error}", flush=True)
    elif event.kind is tether.EventKind.STAGE_BEGIN:
        print(f"stage {event.stage} ({event.count} services)", flush=True)


async def serve(args: argparse.Namespace) -> None:
    store = Store(args.db)
    server = LineServer(store, Stats(store, args.stats_every), args.host, args.port)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.request_stop)
    try:
        with tether.subscribe(print_step):
            await server.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("stopped cleanly", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7878, help="0 picks a free port")
    parser.add_argument("--db", type=Path, default=Path("demo.sqlite3"), help="SQLite file")
    parser.add_argument("--stats-every", type=float, default=10.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    print(f"tether demo: pid {os.getpid()}, Ctrl-C to stop", flush=True)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
