"""The worker side of pre-fork: dying with the master, and running the application."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether._core._base import ServiceBase
    from tether._inject._container import Container

__all__ = ["WorkerMain", "die_with_parent", "service_main"]

WorkerMain = Callable[[], int]
"""Run in the forked child: build the application and run it; returns its exit code."""

_PR_SET_PDEATHSIG = 1


def die_with_parent(master: int) -> None:
    """Make this worker receive SIGTERM when the master dies (Linux), or poll for it."""
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415 - a worker only

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
            if os.getppid() != master:  # the master died before prctl took effect
                os._exit(0)
            return
    import threading  # noqa: PLC0415 - the fallback only

    def watch() -> None:
        while os.getppid() == master:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="tether.master-watch", daemon=True).start()


def service_main(
    load: Callable[[], tuple[ServiceBase, Container | None]],
    options: dict[str, object],
) -> WorkerMain:
    """The worker's body: build the graph with `load` and run it with the runner."""

    def main() -> int:
        from tether._process._runner import Runner  # noqa: PLC0415 - in a worker only

        service, container = load()
        runner = Runner(service, container=container, **options)  # type: ignore[arg-type]
        return runner.execute()

    return main
