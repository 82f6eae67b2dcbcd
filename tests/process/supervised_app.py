"""A supervised program for the process tests: ``tether run tests.process.supervised_app:app``.

``Flaky`` crashes as soon as it runs; its supervisor allows two restarts within a minute,
so the third crash exhausts the intensity at the root.
"""

from __future__ import annotations

import sys

import tether


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Flaky(tether.Service):
    def __init__(self) -> None:
        self.name = "flaky"
        self.runs = 0

    async def start(self) -> None:
        self.runs += 1
        say(f"start:flaky:{self.runs}")

    async def stop(self) -> None:
        say("stop:flaky")

    @tether.task
    async def work(self) -> None:
        raise RuntimeError(f"flaky broke on run {self.runs}")


class Steady(tether.Service):
    async def start(self) -> None:
        say("start:steady")

    async def stop(self) -> None:
        say("stop:steady")


app = tether.Supervisor(
    [Steady(), Flaky()], strategy="one_for_one", max_restarts=2, max_seconds=60, name="root"
)
