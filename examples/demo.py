"""tether's demo: a notes API over SQLite, served by aiohttp and run by ``tether.run``.

Run it with ``make demo`` (or ``python examples/demo.py --help``); it prints how to
call it::

    curl -s -X POST http://127.0.0.1:8080/notes --data 'tether ties services together'
    curl -s http://127.0.0.1:8080/notes/1        # {"id": 1, ..., "words": 4}
    curl -s http://127.0.0.1:8080/stats          # totals, refreshed by a timer
    curl -s http://127.0.0.1:8080/readyz         # also /livez and /status

Five components, declared once and wired by types through a ``tether.Container``:

* ``Database``: a SQLite file, a BlockingService (its hooks run in a worker thread);
* ``Indexer``: a background worker consuming an in-process queue: it counts the words
  of each new note; on stop it finishes what is queued;
* ``Stats``: a cache of totals, refreshed by a timer;
* ``Health``: ``/livez``, ``/readyz`` and ``/status``, mounted into the API;
* ``Api``: the aiohttp application, a ``tether.ext.aiohttp.Server`` that uses the others.

Configuration comes from ``demo.toml`` beside this file, then ``DEMO_*`` environment
variables (``DEMO_HTTP_PORT=9000``, ``DEMO_CACHE_REFRESH=1s``), then ``-c key=value``.
Logs are structured (a console on a terminal, JSON lines otherwise). On Ctrl-C (or
SIGTERM) readiness turns 503, the API keeps serving for the drain delay, then
everything stops in reverse order, each step logged; the exit code is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

import tether
from tether.ext.aiohttp import Server, get
from tether.health import Health

HERE = Path(__file__).resolve().parent
log = logging.getLogger("demo")


# ------------------------------------------------------------------ configuration


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    path: str = "demo.sqlite3"


@tether.section("http")
@dataclasses.dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    drain_delay: dt.timedelta = dt.timedelta(seconds=1)


@tether.section("cache")
@dataclasses.dataclass
class CacheConfig:
    refresh: dt.timedelta = dt.timedelta(seconds=5)


@tether.section("worker")
@dataclasses.dataclass
class WorkerConfig:
    queue_size: int = 1000


# --------------------------------------------------------------------- components


class Database(tether.BlockingService):
    """Notes in a SQLite file; blocking calls, safe from any thread."""

    def __init__(self, config: DbConfig) -> None:
        self.path = Path(config.path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def start(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS notes "
            "(id INTEGER PRIMARY KEY, text TEXT NOT NULL, words INTEGER)"
        )
        self._db.commit()
        log.info("database open: %s", self.path, extra={"path": str(self.path)})

    def stop(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        log.info("database closed")

    def _run(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._db is None:
                raise RuntimeError("the database is not open")
            with self._db:
                return self._db.execute(sql, params).fetchall()

    def add(self, text: str) -> int:
        return int(self._run("INSERT INTO notes (text) VALUES (?) RETURNING id", text)[0][0])

    def note(self, note_id: int) -> dict[str, Any] | None:
        rows = self._run("SELECT id, text, words FROM notes WHERE id = ?", note_id)
        return None if not rows else dict(zip(("id", "text", "words"), rows[0], strict=True))

    def latest(self, count: int) -> list[dict[str, Any]]:
        rows = self._run("SELECT id, text, words FROM notes ORDER BY id DESC LIMIT ?", count)
        return [dict(zip(("id", "text", "words"), row, strict=True)) for row in rows]

    def set_words(self, note_id: int, words: int) -> None:
        self._run("UPDATE notes SET words = ? WHERE id = ?", words, note_id)

    def totals(self) -> tuple[int, int]:
        notes, words = self._run("SELECT COUNT(*), COALESCE(SUM(words), 0) FROM notes")[0]
        return int(notes), int(words)


class Indexer(tether.Service):
    """The background worker: counts the words of new notes, from an in-process queue."""

    def __init__(self, db: Database, config: WorkerConfig) -> None:
        self.db = db
        self.queue: asyncio.Queue[int] = asyncio.Queue(config.queue_size)

    def submit(self, note_id: int) -> None:
        self.queue.put_nowait(note_id)

    @tether.task
    async def consume(self) -> None:
        while True:
            note_id = await self.queue.get()
            try:
                note = await asyncio.to_thread(self.db.note, note_id)
                if note is not None:
                    words = len(note["text"].split())
                    await asyncio.to_thread(self.db.set_words, note_id, words)
                    log.info(
                        "note %d indexed: %d words",
                        note_id,
                        words,
                        extra={"note": note_id, "words": words},
                    )
            finally:
                self.queue.task_done()

    async def stop(self) -> None:
        # The API has stopped already: nothing new arrives. Finish what is queued.
        waiting = self.queue.qsize()
        await self.queue.join()
        log.info("indexer drained its queue (%d waiting at stop)", waiting)


class Stats(tether.Service):
    """A cache of totals, refreshed on a fixed schedule."""

    def __init__(self, db: Database, config: CacheConfig) -> None:
        self.db = db
        self.every = config.refresh.total_seconds()
        self.notes = 0
        self.words = 0
        self.refreshed: dt.datetime | None = None

    @tether.timer(lambda self: self.every, immediate=True)
    async def refresh(self) -> None:
        self.notes, self.words = await asyncio.to_thread(self.db.totals)
        self.refreshed = dt.datetime.now(dt.UTC)

    def snapshot(self) -> dict[str, Any]:
        refreshed = self.refreshed.isoformat(timespec="milliseconds") if self.refreshed else None
        return {"notes": self.notes, "words": self.words, "refreshed": refreshed}


# -------------------------------------------------------------------------- API

routes = web.RouteTableDef()


@routes.post("/notes")
async def add_note(request: web.Request) -> web.Response:
    text = (await request.text()).strip()
    if not text:
        return web.json_response({"error": "send the note's text as the body"}, status=400)
    note_id = await asyncio.to_thread(get(request, Database).add, text)
    get(request, Indexer).submit(note_id)
    return web.json_response({"id": note_id, "text": text, "words": None}, status=201)


@routes.get("/notes/{id:\\d+}")
async def read_note(request: web.Request) -> web.Response:
    note_id = int(request.match_info["id"])
    note = await asyncio.to_thread(get(request, Database).note, note_id)
    if note is None:
        return web.json_response({"error": f"no note {note_id}"}, status=404)
    return web.json_response(note)


@routes.get("/notes")
async def list_notes(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(get(request, Database).latest, 20))


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(get(request, Stats).snapshot())


class Api(Server):
    """The HTTP API: built by the container, which injects the config and itself."""

    def __init__(self, config: HttpConfig, container: tether.Container) -> None:
        app = web.Application()
        app.add_routes(routes)
        super().__init__(
            app,
            host=config.host,
            port=config.port,
            container=container,
            uses=[Database, Indexer, Stats],
            health=Health(drain_delay=config.drain_delay.total_seconds()),
        )

    def on_started(self) -> None:
        url = self.url
        print(
            f"\ntether demo serving on {url} (Ctrl-C stops it gracefully). Try:\n"
            f"  curl -s -X POST {url}/notes --data 'tether ties services together'\n"
            f"  curl -s {url}/notes/1\n"
            f"  curl -s {url}/notes\n"
            f"  curl -s {url}/stats\n"
            f"  curl -s {url}/readyz    # also /livez and /status\n",
            flush=True,
        )


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(description="tether's demo: a notes API over SQLite.")
    parser.add_argument("--config", type=Path, default=HERE / "demo.toml", help="TOML file")
    parser.add_argument(
        "-c", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. -c http.port=9000 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", default="auto", choices=("auto", "plain", "console", "json")
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = tether.Config().add_toml(args.config).add_env("DEMO").add_overrides(args.overrides)
    container = tether.Container(config=config)
    try:
        api = container.root(Api)
    except tether.ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(tether.ExitCode.STARTUP_FAILED) from None
    tether.run(
        api,
        container=container,
        log_format=args.log_format,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
