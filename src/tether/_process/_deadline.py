"""Forced exits: the global shutdown deadline and the second stop signal.

A graceful stop can be defeated by code that ignores it: a task that swallows
`CancelledError`, a hook that blocks the event loop, a worker thread that never
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
import types
from collections.abc import Callable
from typing import Any, NoReturn

from tether._core._base import ServiceBase
from tether._core._engine import hook_task
from tether._core._frames import TETHER_DIR, user_frame, user_location, where
from tether._core._records import ServiceState

from ._picture import graph_records

__all__ = ["FORCED_EXIT", "Deadline", "culprits", "force_exit"]

logger = logging.getLogger("tether.runner")

FORCED_EXIT = 70  # EX_SOFTWARE, as sysexits.h has it

_BUSY = (ServiceState.STARTING, ServiceState.STOPPING)


def _chain(frame: types.FrameType | None) -> list[types.FrameType]:
    """`frame` and its callers, outermost first."""
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    chain.reverse()
    return chain


def _busy_at(frame: types.FrameType | None) -> str | None:
    """Where a thread stopped at `frame` runs code of its own; None if it idles."""
    if frame is None or _idle(frame.f_code.co_filename):
        return None
    inner = user_frame(_chain(frame))
    return where(inner) if inner is not None else None


def _thread_frames() -> list[tuple[threading.Thread, str]]:
    """Threads other than the main one that keep the process alive, busy in own code.

    Daemon threads do not hold the exit up and are left out; a thread whose innermost
    frame is an idle wait of the standard library (an executor worker waiting for
    work) is not busy.
    """
    frames = sys._current_frames()
    found: list[tuple[threading.Thread, str]] = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.ident is None or thread.daemon:
            continue
        if thread is threading.current_thread():
            continue
        place = _busy_at(frames.get(thread.ident))
        if place is not None:
            found.append((thread, place))
    return found


_STDLIB = os.path.dirname(os.__file__) + os.sep  # noqa: PTH120 - a prefix for startswith
_IDLE_FILES = frozenset(
    os.path.join(_STDLIB, name)  # noqa: PTH118 - plain strings compared with co_filename
    for name in ("threading.py", "queue.py", "selectors.py", "concurrent/futures/thread.py")
)
_ASYNCIO = os.path.dirname(asyncio.__file__) + os.sep  # noqa: PTH120


def _idle(filename: str) -> bool:
    return filename in _IDLE_FILES or filename.startswith((TETHER_DIR, _ASYNCIO))


def culprits(
    root: ServiceBase,
    loop: asyncio.AbstractEventLoop | None,
    interrupted: types.FrameType | None = None,
) -> str:
    """What is still running: busy services, live tasks, threads running user code.

    `interrupted` is the frame a signal handler interrupted (the event loop's thread,
    as it was); without it, the main thread is looked at from outside.
    """
    if interrupted is None and threading.current_thread() is not threading.main_thread():
        main_ident = threading.main_thread().ident
        interrupted = sys._current_frames().get(main_ident or 0)
    loop_busy = _busy_at(interrupted)

    def place_of(task: asyncio.Task[Any]) -> str | None:
        coro: Any = task.get_coro()
        if getattr(coro, "cr_running", False):
            return loop_busy  # the task was interrupted mid-step: it is where the loop is
        return user_location(task)

    parts: list[str] = []
    now = time.perf_counter()
    owned: set[asyncio.Task[Any]] = set()
    for rec in graph_records(root):
        owned.update(rec.tasks or ())
        if rec.state in _BUSY:
            hook = "start" if rec.state is ServiceState.STARTING else "stop"
            age = f" for {now - rec.changed_at:.1f}s" if rec.changed_at else ""
            task = hook_task(rec)
            place = place_of(task) if task is not None else None
            if task is not None:
                owned.add(task)
            if place is None:
                at = f" (its {hook} has not finished)"
            elif place == loop_busy:
                at = f"; its {hook} hook is blocking the event loop at {place}"
            else:
                at = f"; its {hook} hook is at {place}"
            parts.append(f"{rec.name} is {rec.state.value}{age}{at}")
        parts.extend(
            f"{rec.name}: task {task.get_name()!r} at {place_of(task) or '(tether or asyncio)'}"
            for task in sorted(rec.tasks or (), key=lambda t: t.get_name())
            if not task.done()
        )
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(RuntimeError):
            for task in asyncio.all_tasks(loop):
                if task in owned or task.done():
                    continue
                if task.get_name().startswith("tether."):
                    # The runner's own tasks matter only when a hook runs inside them.
                    place = place_of(task)
                    if place is not None:
                        parts.append(f"a hook is busy at {place}")
                    continue
                place = place_of(task)
                parts.append(f"task {task.get_name()!r} at {place or '(tether or asyncio)'}")
    if loop_busy is not None and not any(loop_busy in part for part in parts):
        parts.append(f"the event loop is busy at {loop_busy}")
    parts.extend(f"thread {thread.name!r} is busy at {place}" for thread, place in _thread_frames())
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
    """A thread that ends the process `seconds` after `arm`, unless disarmed.

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
        force_exit(f"shutdown deadline of {self.seconds:g}s passed ({self.reason})", self.describe)
