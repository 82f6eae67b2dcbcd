"""An application module for the REPL tests: names of its own, a crash and a stop on demand."""

from __future__ import annotations

import tether


class Database(tether.Service):
    async def ping(self) -> str:
        return "pong"

    async def lookup(self, key: str) -> str:
        return self.table()[key]

    def table(self) -> dict[str, str]:
        return {}


class Worker(tether.Service):
    def crash(self) -> None:
        self.add_task(self.explode())

    async def explode(self) -> None:
        raise RuntimeError("the worker crashed")

    def quit(self) -> None:
        self.request_stop()


class Api(tether.Service):
    def __init__(self, db: Database, worker: Worker) -> None:
        self.db = db
        self.worker = worker

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.db, self.worker]


db = Database()
worker = Worker()
api = Api(db, worker)
GREETING = "hello"
