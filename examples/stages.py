"""Custom lifecycle stages, the way systemPY's example daemon declares them.

systemPY's stages map onto tether's built-in ones: ``on_init`` is ``on_init`` (before
the event loop exists), ``on_startup`` is ``start``, ``post_startup`` is
``on_started``, ``pre_shutdown`` is ``on_stopping``, ``on_shutdown`` is ``stop`` and
``on_exit`` is ``on_exit`` (after the loop closed). Your own stages are placed before
or after any stage, with a direction: ``forward`` (dependencies first), ``backward``
(dependents first) or ``gather`` (all at once). A mixin declares them with default
hooks, and a service overrides those by name, as a systemPY unit does with its target.

Run it, then press Ctrl-C (or send SIGTERM)::

    python examples/stages.py
"""

from __future__ import annotations

import os

import tether

BEFORE_STARTED = tether.Stage("before_started", before=tether.STARTED, direction="forward")
BEFORE_STOPPING = tether.Stage("before_stopping", before=tether.STOPPING, direction="gather")
AFTER_STOP = tether.Stage("after_stop", after=tether.STOP, direction="backward")
ALSO_AFTER_STOP = tether.Stage("also_after_stop", after=tether.STOP, direction="backward")
AFTER_ALSO_AFTER_STOP = tether.Stage(
    "after_also_after_stop", after=ALSO_AFTER_STOP, direction="backward"
)


class ExampleTarget:
    """Declares hooks for the custom stages (systemPY's ``TargetExt`` subclass)."""

    @BEFORE_STARTED
    def before_started(self) -> None:
        """Runs between ``start`` and ``started``, dependencies first."""

    @BEFORE_STOPPING
    async def before_stopping(self) -> None:
        """Runs before ``stopping``, for every service at once."""

    @AFTER_STOP
    def after_stop(self) -> None:
        """Runs after ``stop``, dependents first."""

    @ALSO_AFTER_STOP
    def also_after_stop(self) -> None:
        """Also after ``stop``, once ``after_stop`` has run."""

    @AFTER_ALSO_AFTER_STOP
    def after_also_after_stop(self) -> None:
        """After ``also_after_stop``."""


class ExampleDaemon(ExampleTarget, tether.Service):
    """Prints each stage as it runs, indented like systemPY's example."""

    @tether.task
    async def main(self) -> None:  # systemPY's main_async
        while await self.sleep(5):
            print("\t\t\t\ttick", flush=True)

    def on_init(self) -> None:
        print("ON INIT", flush=True)

    async def start(self) -> None:
        print("\t\tON STARTUP", flush=True)

    def before_started(self) -> None:
        print("\t\t\tCUSTOM BEFORE POST STARTUP", flush=True)

    async def on_started(self) -> None:
        print("\t\t\tPOST STARTUP", flush=True)

    async def before_stopping(self) -> None:
        print("\t\t\tCUSTOM BEFORE PRE SHUTDOWN", flush=True)

    async def on_stopping(self) -> None:
        print("\t\t\tPRE SHUTDOWN", flush=True)

    async def stop(self) -> None:
        print("\t\tON SHUTDOWN", flush=True)

    def after_stop(self) -> None:
        print("\tPOST SHUTDOWN", flush=True)

    def also_after_stop(self) -> None:
        print("\tALSO AFTER POST SHUTDOWN", flush=True)

    def after_also_after_stop(self) -> None:
        print("\tAFTER ALSO AFTER POST SHUTDOWN", flush=True)

    def on_exit(self) -> None:
        print("ON EXIT", flush=True)


if __name__ == "__main__":
    print(f"PID: {os.getpid()}", flush=True)
    ExampleDaemon.launch(log_level="warning")
