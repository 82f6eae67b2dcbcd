"""An application wired by types, for `tether run` tests (no `dependencies` anywhere)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import tether


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str = "sqlite://:memory:"
    pool_size: int = 5


class Connections:
    """A resource a generator provider opens and closes (not a service)."""

    def __init__(self, size: int) -> None:
        self.size = size


def connections(config: DbConfig) -> Iterator[Connections]:
    print(f"connections open: {config.pool_size}", flush=True)
    yield Connections(config.pool_size)
    print("connections closed", flush=True)


class Database(tether.Service):
    def __init__(self, config: DbConfig, connections: Connections) -> None:
        self.config = config
        self.connections = connections

    async def start(self) -> None:
        print(f"start:db {self.config.url} pool={self.connections.size}", flush=True)

    async def stop(self) -> None:
        print("stop:db", flush=True)


class Api(tether.Service):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self) -> None:
        print("start:api", flush=True)

    async def stop(self) -> None:
        print("stop:api", flush=True)


container = tether.Container(config=tether.Config().add_dict({"db": {"url": "sqlite://app"}}))
container.register(connections)
