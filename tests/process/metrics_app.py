"""A program whose Health serves /metrics on a free port, printed once the graph runs."""

from __future__ import annotations

import asyncio
import sys

import tether
from tether.ext.prometheus import Metrics
from tether.health import Health


class Database(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0.01)


class Api(tether.Service):
    def __init__(self) -> None:
        self.health = Health(port=0, metrics=Metrics(registry=None), drain_delay=0)
        self.database = Database()

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.health, self.database]

    def on_started(self) -> None:
        sys.stdout.write(f"metrics at {self.health.url}/metrics\n")
        sys.stdout.flush()


api = Api()
