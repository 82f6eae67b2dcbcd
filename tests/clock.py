"""An event loop on a virtual clock that jumps to the next timer when it would block.

Like trio's MockClock with autojump: time-based code (timers, sleeps, timeouts) runs
instantly and deterministically, with exact timestamps.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout > 0:
            events = super().select(0)
            if events:
                return events
            if timeout is None:  # nothing scheduled: a real wait (I/O or a thread)
                return super().select(None)
            self._loop.advance(timeout)
            return []
        return super().select(timeout)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` only moves when it has nothing to do."""

    def __init__(self) -> None:
        self._now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class VirtualClockPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return VirtualClockLoop()
