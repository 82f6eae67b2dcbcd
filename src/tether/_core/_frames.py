"""Where code is: the frame a task waits in or a thread runs, outside tether and asyncio.

Shared by the live picture, the diagnostics of a late stop and the watchdog of a
service thread: each names the innermost frame of the user's code.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import traceback
import types
from typing import Any

__all__ = ["TETHER_DIR", "stuck_at", "suspended_at", "user_frame", "user_location", "where"]

# os.path, not pathlib: `import tether` should not pay for importing pathlib.
TETHER_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep  # noqa: PTH120
"""The directory of the tether package (a prefix of every one of its files)."""
_SKIPPED_DIRS = (TETHER_DIR, os.path.dirname(asyncio.__file__) + os.sep)  # noqa: PTH120


def _frames(task: asyncio.Task[Any]) -> list[types.FrameType]:
    """The frames of `task`'s coroutine chain, outermost first, following awaits."""
    frames: list[types.FrameType] = []
    awaited: Any = task.get_coro()
    for _ in range(200):  # a bound against odd awaitables that refer to themselves
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        inner = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        if inner is None and frame.f_code.co_filename.startswith(TETHER_DIR):
            # The engine steps some hooks by hand (a generator holding the hook's
            # coroutine in a local named `coro`): follow it to the hook.
            held = frame.f_locals.get("coro")
            if asyncio.iscoroutine(held):
                inner = held
        awaited = inner
    return frames


def where(frame: types.FrameType) -> str:
    """`file:line in function` for `frame`, the file relative to the cwd if inside it."""
    filename = frame.f_code.co_filename
    try:
        filename = os.path.relpath(filename)
        if filename.startswith(".."):
            filename = frame.f_code.co_filename
    except ValueError:
        pass
    return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def user_frame(frames: list[types.FrameType]) -> types.FrameType | None:
    """The innermost frame outside tether and asyncio, else the innermost frame."""
    for frame in reversed(frames):
        if not frame.f_code.co_filename.startswith(_SKIPPED_DIRS):
            return frame
    return frames[-1] if frames else None


def user_location(task: asyncio.Task[Any]) -> str | None:
    """Where `task` waits in code outside tether and asyncio; None if nowhere."""
    frames = _frames(task)
    frame = user_frame(frames)
    if frame is None or frame.f_code.co_filename.startswith(_SKIPPED_DIRS):
        return None
    return where(frame)


def suspended_at(task: asyncio.Task[Any]) -> str:
    """Where `task` waits, as `at app.py:12 in consume`; or how it ended."""
    if task.done():
        return "(done)"
    frame = user_frame(_frames(task))
    if frame is None:
        return "(not started yet)"
    return f"at {where(frame)}"


# Where the standard library lives (os.path: `import tether` should not pay for pathlib).
_STDLIB = os.path.dirname(os.__file__) + os.sep  # noqa: PTH120


def _in_library(filename: str) -> bool:
    """Whether code in `filename` is tether's or the standard library's, not the user's."""
    if filename.startswith(TETHER_DIR):
        return True
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def stuck_at(thread: threading.Thread) -> tuple[str, str]:
    """Where `thread` runs now: `file:line in function` and its stack, formatted."""
    ident = thread.ident
    frame: types.FrameType | None = sys._current_frames().get(ident) if ident is not None else None
    if frame is None:
        return "(the thread is not running)", ""
    frames: list[types.FrameType] = []
    walk: types.FrameType | None = frame
    while walk is not None:
        frames.append(walk)
        walk = walk.f_back
    chosen = next((f for f in frames if not _in_library(f.f_code.co_filename)), frame)
    location = where(chosen)
    stack = "".join(traceback.format_stack(frame, limit=8))
    return location, stack
