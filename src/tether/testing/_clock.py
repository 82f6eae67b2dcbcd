"""An event loop on virtual time: timers fire at once, in order, at exact timestamps.

The loop's `time()` is a number that only moves forward when the loop has nothing
else to do and a timer is pending: then it jumps straight to that timer (trio's
`MockClock` with autojump). I/O, threads and subprocesses still run in real time.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
import typing
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that advances its loop's clock instead of sleeping until a timer."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout <= 0:
            return super().select(timeout)
        threshold = self._loop.autojump_threshold
        if timeout is None or math.isinf(threshold):
            # No timer pending (or jumps are manual): only I/O, a thread or advance()
            # called through call_soon_threadsafe can wake the loop.
            return super().select(None)
        events = super().select(threshold)
        if not events:
            self._loop.advance(timeout)
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer when the loop would wait for it.

    Code that sleeps, times out or runs on a schedule (`asyncio.sleep`,
    `asyncio.timeout`, `@tether.timer`) then runs instantly and deterministically:
    `loop.time()` reads exactly the deadline of each timer as it fires. Use it as a loop
    factory: `asyncio.Runner(loop_factory=VirtualClockLoop)`,
    `asyncio.run(main(), loop_factory=VirtualClockLoop)` (Python 3.12+), or
    pytest-asyncio's `pytest_asyncio_loop_factories` hook;
    [`VirtualClock`][tether.testing.VirtualClock] is the same as a runner.

    `start` is the clock's first reading. `autojump_threshold` is how long, in real
    seconds, the loop waits for I/O before jumping to the next timer: 0 (the default)
    jumps as soon as nothing is ready; give threads and subprocesses an allowance if a
    test waits on them while a timer is pending; `math.inf` disables jumping, so time
    moves only through `advance`.
    """

    def __new__(cls, *, start: float = 0.0, autojump_threshold: float = 0.0) -> Self:  # noqa: ARG004
        # Checked before the loop exists: a half-built loop complains when collected.
        if autojump_threshold < 0:
            raise ValueError(
                f"autojump_threshold must be 0 or more real seconds, got {autojump_threshold!r}."
            )
        return super().__new__(cls)

    def __init__(self, *, start: float = 0.0, autojump_threshold: float = 0.0) -> None:
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """The virtual time: `start` plus every jump and `advance` so far."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`; timers now due fire on the next iteration.

        Call it from the loop's thread (or through `loop.call_soon_threadsafe`).
        Raises ValueError for a negative value: the clock is monotonic.
        """
        if seconds < 0:
            raise ValueError(f"The clock only moves forward; cannot advance by {seconds!r}.")
        self._now += seconds


class VirtualClock:
    """Runs coroutines on a `VirtualClockLoop`, as an `asyncio.Runner` does.

    For synchronous tests of time-based code: every `run` uses the same loop until
    `close` (or the end of a `with` block), which cancels what is left, shuts
    down async generators and the default executor, and closes the loop. The
    `virtual_clock` fixture provides one per test and has the leak check look for tasks
    left on it before closing it:

    ```python
    def test_ticks_every_ten_seconds(virtual_clock: tether.testing.VirtualClock) -> None:
        ticker = Ticker()
        virtual_clock.run(ticker.run())          # a minute of ticks, instantly
        assert ticker.ticks == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    ```

    `start` and `autojump_threshold` are passed to the loop; `debug` to the runner.
    """

    def __init__(
        self, *, start: float = 0.0, autojump_threshold: float = 0.0, debug: bool | None = None
    ) -> None:
        self._start = float(start)
        self._made: VirtualClockLoop | None = None

        def make_loop() -> VirtualClockLoop:
            self._made = VirtualClockLoop(start=start, autojump_threshold=autojump_threshold)
            return self._made

        self._runner = asyncio.Runner(debug=debug, loop_factory=make_loop)

    def run(self, coro: Coroutine[Any, Any, T], *, context: contextvars.Context | None = None) -> T:
        """Run `coro` on the loop until it completes and return its result."""
        return self._runner.run(coro, context=context)

    def get_loop(self) -> VirtualClockLoop:
        """The loop, made on first use."""
        self._runner.get_loop()
        return typing.cast("VirtualClockLoop", self._made)

    def time(self) -> float:
        """The loop's virtual time (`start` until the loop exists)."""
        return self._start if self._made is None else self._made.time()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (see `VirtualClockLoop.advance`)."""
        self.get_loop().advance(seconds)

    def close(self) -> None:
        """Cancel what is left on the loop, shut it down and close it, as `asyncio.run` does."""
        self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VirtualClock time={self.time()!r}>"
