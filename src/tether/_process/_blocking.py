"""The blocked-loop detector: a thread that notices when the event loop stops turning.

mode's `blocking_timeout` and aiodebug's slow-callback log, with the culprit named. A
timer on the loop (`_beat`) notes each time it runs; a thread of its own watches for a
beat that is late by more than `timeout`, which means the loop has not completed an
iteration for that long: some code holds it. The thread then looks at the loop's
thread from outside (`sys._current_frames`) and logs the stack of that code, the task
running it and the service that task (or the code's `self`) belongs to, and tells
systemd with a `STATUS=` line. It never sends `WATCHDOG=1`: pings come from the loop
only, so a blocked loop stays unpinged and systemd's watchdog sees it.

When the loop turns again the beat reports how long it was held: the count goes to the
service's record (`tether.status(service).loop_blocks`, the status tree) and to the
detector (the runner's SIGUSR1 header), and a `LOOP_BLOCKED` lifecycle event is
published.

Cost: one timer callback every `timeout / 4` (at most every second) on the loop, and a
thread that wakes about once per `timeout`; nothing per loop iteration
(`benchmarks/bench_blocking.py` measures what it amounts to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from tether._core._base import ServiceBase
from tether._core._engine import hook_task
from tether._core._events import EventKind, LifecycleEvent, publish, publishing
from tether._core._frames import TETHER_DIR, where
from tether._core._records import Record, ServiceState

from ._notify import Notifier
from ._picture import graph_records

__all__ = ["BlockingDetector", "check_blocking_timeout"]

logger = logging.getLogger("tether.blocking")

_LIBRARY = (
    TETHER_DIR,
    os.path.dirname(asyncio.__file__) + os.sep,  # noqa: PTH120 - a prefix for startswith
    os.path.join(os.path.dirname(os.__file__), "runpy.py"),  # noqa: PTH118, PTH120
    os.path.join(os.path.dirname(os.__file__), "threading.py"),  # noqa: PTH118, PTH120
)
_LOOP = (TETHER_DIR, os.path.dirname(asyncio.__file__) + os.sep)  # noqa: PTH120
"""The event loop's machinery: what runs a callback or a task's step."""
_STACK_LIMIT = 30
_BUSY = (ServiceState.STARTING, ServiceState.STOPPING)


def check_blocking_timeout(value: object) -> float | None:
    """`blocking_timeout` as seconds, or None (off); ValueError naming what is wrong."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or math.isinf(value)
    ):
        raise ValueError(
            f"blocking_timeout must be a positive, finite number of seconds (or None, the "
            f"default, to leave the blocked-loop detector off), got {value!r}."
        )
    return float(value)


class _Block:
    """One block seen by the watching thread, finished by the loop once it turns again."""

    __slots__ = ("due", "location", "record", "summary")

    def __init__(self, due: float, record: Record | None, location: str, summary: str) -> None:
        self.due = due
        self.record = record
        self.location = location
        self.summary = summary


class BlockingDetector:
    """Watches `loop` (running in this thread) for iterations longer than `timeout`.

    `root` is the graph whose services are named; `notifier`, if any, gets a
    `STATUS=` line while the loop is blocked and once it turns again; `phase` says
    what the process is doing, for that line. Start it from the loop (`start`),
    close it from the loop (`close`).
    """

    def __init__(
        self,
        root: ServiceBase,
        timeout: float,
        *,
        notifier: Notifier | None = None,
        phase: Callable[[], str] = lambda: "running",
    ) -> None:
        self.root = root
        self.timeout = timeout
        self.interval = min(timeout / 4, 1.0)
        self.notifier = notifier
        self.phase = phase
        self.count = 0
        """Blocks so far."""
        self.longest = 0.0
        """The longest block so far, in seconds."""
        self.last: str | None = None
        """Who blocked the loop last, and where."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ident: int | None = None
        self._due = math.inf  # time.monotonic() by which the next beat should run
        self._block: _Block | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def summary(self) -> str:
        """The blocks so far in words, for the runner's last lines."""
        return (
            f"the event loop was blocked {self.count} time(s) past {self.timeout:g}s, "
            f"longest {self.longest:.2f}s"
        )

    def status_line(self) -> str:
        """The line of the SIGUSR1 header: the blocks so far, and who blocked it last."""
        line = f"event loop: blocked {self.count} time(s) past {self.timeout:g}s"
        if self.count:
            line += f", longest {self.longest:.2f}s, last: {self.last}"
        return line

    # ------------------------------------------------------------- loop side

    def start(self) -> None:
        """Begin watching the running loop of this thread."""
        self._loop = asyncio.get_running_loop()
        self._ident = threading.get_ident()
        self._schedule()
        self._thread = threading.Thread(
            target=self._watch, name="tether-blocking-detector", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop watching; the thread ends."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = time.monotonic() + self.interval
        self._handle = self._loop.call_later(self.interval, self._beat)

    def _beat(self) -> None:
        """The loop turned: report a block the thread saw, and plan the next beat."""
        now = time.monotonic()
        block = self._block
        if block is not None and block.due == self._due:
            self._block = None
            self._finish(block, now - block.due)
        self._schedule()

    def _finish(self, block: _Block, seconds: float) -> None:
        self.count += 1
        self.longest = max(self.longest, seconds)
        self.last = block.summary
        rec = block.record
        if rec is not None:
            rec.count_block(seconds)
        logger.info(
            "tether: the event loop turned again after %.2fs; %s",
            seconds,
            block.summary,
            extra={"blocked_ms": round(seconds * 1000, 3)},
        )
        if self.notifier is not None:
            self.notifier.status(
                f"{self.phase()}; the event loop was blocked {self.count} time(s), "
                f"longest {self.longest:.1f}s (last: {block.location})"
            )
        if publishing():
            publish(
                LifecycleEvent(
                    kind=EventKind.LOOP_BLOCKED,
                    service=rec.service if rec is not None else None,
                    duration=seconds,
                    detail=block.location,
                    count=self.count,
                )
            )

    # ----------------------------------------------------------- thread side

    def _watch(self) -> None:
        # It sleeps until the moment the current beat would be `timeout` late; by then
        # the loop has usually moved the beat on, and it sleeps again: about one wake
        # per `timeout`, and none at all per loop iteration.
        reported = math.nan
        while True:
            due = self._due
            wait = due + self.timeout - time.monotonic()
            if wait > 0:
                if self._stop.wait(wait):
                    return
                continue
            if due != reported and due == self._due:
                reported = due
                try:
                    self._report(due)
                except Exception:  # the detector must never take the process down
                    logger.exception("tether: the blocked-loop detector failed to report")
            if self._stop.wait(self.interval):
                return

    def _report(self, due: float) -> None:
        """The loop has not turned since `due` + `timeout`: log who holds it, and where."""
        ident = self._ident
        frame = sys._current_frames().get(ident) if ident is not None else None
        if frame is None:
            return
        stack = _chain(frame)
        task = _current_task(self._loop)
        rec, how = self._culprit(task, stack)
        location = _location(stack)
        summary = f"{how} at {location}" if how else f"code at {location}"
        self._block = _Block(due, rec, location, summary)
        blocked = time.monotonic() - due
        logger.warning(
            "tether: the event loop has not turned for %.2fs (blocking_timeout %gs): %s is "
            "blocking it; its stack, innermost last:\n%s",
            blocked,
            self.timeout,
            summary,
            "".join(traceback.format_list(_shown(stack))).rstrip(),
            extra={"blocked_ms": round(blocked * 1000, 3)},
        )
        if self.notifier is not None:
            self.notifier.status(f"{self.phase()}; the event loop is blocked: {summary}")

    def _culprit(
        self, task: asyncio.Task[Any] | None, stack: list[types.FrameType]
    ) -> tuple[Record | None, str]:
        """The record of the service whose code blocks, and who that is in words."""
        try:
            records = graph_records(self.root)
        except RuntimeError:  # the graph changed under us: name what the frames say
            records = []
        owner: Record | None = None
        hook: Record | None = None
        if task is not None:
            for rec in records:
                if rec.tasks and task in rec.tasks:
                    owner = rec
                    break
                if rec.state in _BUSY and hook_task(rec) is task:
                    hook = rec if hook is None else _in_stack(hook, rec, stack)
        known = {id(rec.service): rec for rec in records}
        coder = _service_in_stack(stack, known)
        name = f"task {task.get_name()!r}" if task is not None else "a callback (no task)"
        if owner is not None:
            culprit = coder or owner
            what = f"{culprit.name} (in {name} of {owner.name})"
            if culprit is owner:
                what = f"{owner.name} (its {name})"
            return culprit, what
        if hook is not None:
            culprit = coder or hook
            stage = "start" if hook.state is ServiceState.STARTING else "stop"
            if culprit is hook:
                return hook, f"{hook.name} (its {stage} hook)"
            return culprit, f"{culprit.name} (during the {stage} hook of {hook.name})"
        if coder is not None:
            return coder, f"{coder.name} (in {name})"
        return None, name


def _current_task(loop: asyncio.AbstractEventLoop | None) -> asyncio.Task[Any] | None:
    if loop is None:
        return None
    with contextlib.suppress(RuntimeError):
        return asyncio.current_task(loop)
    return None


def _chain(frame: types.FrameType | None) -> list[types.FrameType]:
    """`frame` and its callers, outermost first."""
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    chain.reverse()
    return chain


def _mine(frame: types.FrameType) -> bool:
    """Whether `frame` runs the user's code (not tether's, asyncio's or the stdlib's)."""
    return not frame.f_code.co_filename.startswith(_LIBRARY)


def _location(stack: list[types.FrameType]) -> str:
    """Where the innermost code of the user is (else the innermost frame)."""
    for frame in reversed(stack):
        if _mine(frame):
            return where(frame)
    return where(stack[-1]) if stack else "(unknown)"


def _shown(stack: list[types.FrameType]) -> traceback.StackSummary:
    """The stack worth showing: what the loop's current callback or task step runs.

    From the first frame of the user's code after the last frame of the event loop
    (asyncio's or tether's own machinery) inwards; all of it when no such frame is
    found, at most `_STACK_LIMIT` frames.
    """
    machinery = [i for i, frame in enumerate(stack) if frame.f_code.co_filename.startswith(_LOOP)]
    start = 0
    for i in reversed(machinery):
        if any(_mine(frame) for frame in stack[i + 1 :]):
            start = i + 1
            break
    frames = stack[start:][-_STACK_LIMIT:]
    return traceback.StackSummary.extract(
        ((frame, frame.f_lineno) for frame in frames), lookup_lines=True
    )


def _service_in_stack(stack: list[types.FrameType], known: dict[int, Record]) -> Record | None:
    """The service of the innermost method of a service on the stack (its `self`)."""
    for frame in reversed(stack):
        code = frame.f_code
        if not code.co_argcount or code.co_varnames[0] != "self" or not _mine(frame):
            continue
        owner = frame.f_locals.get("self")
        if isinstance(owner, ServiceBase):
            rec = known.get(id(owner))
            if rec is not None:
                return rec
    return None


def _in_stack(first: Record, second: Record, stack: list[types.FrameType]) -> Record:
    """Of two services with a hook in the same task, the one whose hook is on the stack."""
    codes = {id(frame.f_code) for frame in stack}
    for rec in (second, first):
        info = rec.info
        attr = info.start if rec.state is ServiceState.STARTING else info.stop
        method = getattr(type(rec.service), attr, None) if attr else None
        code = getattr(method, "__code__", None)
        if code is not None and id(code) in codes:
            return rec
    return first
