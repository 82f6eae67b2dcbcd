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
_PARENT_DIED = getattr(signal, "SIGRTMAX", 64) - 1
"""The parent-death signal (Linux): a real-time one that nothing else sends."""


def die_with_parent(master: int) -> None:
    """Make this process receive SIGTERM, once, when its parent dies (Linux), or poll for it.

    On Linux the kernel's parent-death signal is a real-time signal of tether's own,
    turned into one SIGTERM here: the kernel sends it each time this process passes
    to another thread of the dying parent (a reloader has several), and a second
    SIGTERM would force the stop instead of letting it end gracefully.
    Call it from the main thread.
    """
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415 - a worker only

        libc = ctypes.CDLL(None, use_errno=True)
        previous = signal.signal(_PARENT_DIED, _parent_died)
        if libc.prctl(_PR_SET_PDEATHSIG, _PARENT_DIED, 0, 0, 0) == 0:
            if os.getppid() != master:  # the master died before prctl took effect
                os._exit(0)
            return
        signal.signal(_PARENT_DIED, previous)
    import threading  # noqa: PLC0415 - the fallback only

    def watch() -> None:
        while os.getppid() == master:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="tether.master-watch", daemon=True).start()


def _parent_died(signum: int, frame: object) -> None:
    """The parent is gone: SIGTERM, the first time only (later ones are ignored)."""
    del frame
    signal.signal(signum, signal.SIG_IGN)
    os.kill(os.getpid(), signal.SIGTERM)


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
