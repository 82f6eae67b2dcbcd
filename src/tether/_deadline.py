"""Forced exits: the global shutdown deadline and the second stop signal.

A graceful stop can be defeated by code that ignores it: a task that swallows
``CancelledError``, a hook that blocks the event loop, a worker thread that never
returns. The deadline is a thread of its own, so it fires even when the loop is
blocked; it names what was still running and ends the process with exit code 70.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ._picture import graph_records, suspended_at, user_frame, user_location, where
from ._service import ServiceBase, ServiceState

__all__ = ["FORCED_EXIT", "Deadline", "culprits", "force_exit"]

logger = logging.getLogger("tether.runner")

FORCED_EXIT = 70  # EX_SOFTWARE, as sysexits.h has it

_BUSY = (ServiceState.STARTING, ServiceState.STOPPING)


def _thread_frames() -> list[tuple[threading.Thread, str]]:
    """Threads that would keep the process alive, busy in code of their own.

    Daemon threads do not hold the exit up and are left out; a thread whose innermost
    frame is an idle wait of the standard library (an executor worker waiting for
    work, the event loop waiting in ``select``) is not busy.
    """
    frames = sys._current_frames()  # noqa: SLF001 - the documented way to see other threads
    found: list[tuple[threading.Thread, str]] = []
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.ident is None or thread.daemon:
            continue
        frame = frames.get(thread.ident)
        if frame is None or _idle(frame.f_code.co_filename):
            continue
        chain = []
        while frame is not None:
            chain.append(frame)
            frame = frame.f_back
        chain.reverse()
        inner = user_frame(chain)
        if inner is not None:
            found.append((thread, where(inner)))
    return found


_STDLIB = os.path.dirname(os.__file__) + os.sep  # noqa: PTH120 - a prefix for startswith
_IDLE_FILES = frozenset(
    os.path.join(_STDLIB, name)  # noqa: PTH118 - plain strings compared with co_filename
    for name in ("threading.py", "queue.py", "selectors.py", "concurrent/futures/thread.py")
)
_TETHER = os.path.dirname(__file__) + os.sep  # noqa: PTH120
_ASYNCIO = os.path.dirname(asyncio.__file__) + os.sep  # noqa: PTH120


def _idle(filename: str) -> bool:
    return filename in _IDLE_FILES or filename.startswith((_TETHER, _ASYNCIO))


def culprits(root: ServiceBase, loop: asyncio.AbstractEventLoop | None) -> str:
    """What is still running: busy services, live tasks, threads running user code."""
    parts: list[str] = []
    now = time.perf_counter()
    owned: set[asyncio.Task[object]] = set()
    for rec in graph_records(root):
        owned.update(rec.tasks or ())
        if rec.state in _BUSY:
            hook = "start" if rec.state is ServiceState.STARTING else "stop"
            age = f" for {now - rec.changed_at:.1f}s" if rec.changed_at else ""
            parts.append(f"{rec.name} is {rec.state.value}{age} (its {hook} has not finished)")
        for task in sorted(rec.tasks or (), key=lambda t: t.get_name()):
            if not task.done():
                parts.append(f"{rec.name}: task {task.get_name()!r} {suspended_at(task)}")
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(RuntimeError):
            for task in asyncio.all_tasks(loop):
                if task in owned or task.done():
                    continue
                if task.get_name().startswith("tether."):
                    # The runner's own tasks matter only when a hook runs inside them.
                    place = user_location(task)
                    if place is not None:
                        parts.append(f"a hook is busy at {place}")
                    continue
                parts.append(f"task {task.get_name()!r} {suspended_at(task)}")
    for thread, place in _thread_frames():
        who = "the event loop" if thread is threading.main_thread() else f"thread {thread.name!r}"
        parts.append(f"{who} is busy at {place}")
    if not parts:
        return "nothing identifiable was still running"
    return "still running: " + "; ".join(parts)


def force_exit(reason: str, describe: Callable[[], str]) -> NoReturn:
    """Log why, name what was still running, flush what can be flushed, exit with 70."""
    try:
        details = describe()
    except Exception as exc:  # the description is best effort; the exit is not
        details = f"(could not list what was running: {exc!r})"
    message = f"{reason}: forcing exit with code {FORCED_EXIT}; {details}"
    try:
        logger.critical("%s", message)
        for handler in logging.getLogger().handlers:
            handler.flush()
    except Exception:
        os.write(2, f"tether: {message}\n".encode(errors="replace"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(FORCED_EXIT)


class Deadline:
    """A thread that ends the process ``seconds`` after :meth:`arm`, unless disarmed.

    The thread starts idle with the runner (starting a thread from a signal handler
    could deadlock on threading's own locks); arming only records the reason and sets
    an event, which is safe from a signal handler.
    """

    def __init__(self, seconds: float, describe: Callable[[], str]) -> None:
        self.seconds = seconds
        self.describe = describe
        self.reason = ""
        self.armed_at: float | None = None
        self._armed = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tether-deadline", daemon=True)
        self._thread.start()

    def arm(self, reason: str) -> None:
        """Start counting (once; later calls keep the first reason)."""
        if self._armed.is_set():
            return
        self.reason = reason
        self.armed_at = time.monotonic()
        self._armed.set()

    def disarm(self) -> None:
        """The process is ending on its own: stop the thread."""
        self._done.set()
        self._armed.set()

    def _watch(self) -> None:
        self._armed.wait()
        if self._done.is_set():
            return
        if self._done.wait(self.seconds):
            return
        force_exit(
            f"shutdown deadline of {self.seconds:g}s passed ({self.reason})", self.describe
        )
