"""Background work owned by services: `@task`, `@timer`, `@cron` and `sleep`."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._events import EventKind, LifecycleEvent, publish, publishing

if TYPE_CHECKING:
    import datetime as dt

    from ._base import ServiceBase
    from ._records import Record

__all__ = ["TaskSpec", "cron", "sleep_until", "task", "timer"]

logger = logging.getLogger("tether.tasks")

AsyncMethod = TypeVar("AsyncMethod", bound=Callable[..., Coroutine[Any, Any, Any]])


class TaskSpec:
    """How a decorated method runs: for the service's lifetime, on a timer, or on cron."""

    __slots__ = ("expression", "immediate", "interval", "kind", "tz")

    def __init__(
        self,
        kind: str,
        *,
        interval: float | Callable[[Any], float] = 0.0,
        immediate: bool = False,
        expression: str = "",
        tz: dt.tzinfo | None = None,
    ) -> None:
        self.kind = kind
        self.interval = interval
        self.immediate = immediate
        self.expression = expression
        self.tz = tz

    def run(self, service: ServiceBase, attr: str, rec: Record) -> Coroutine[Any, Any, None]:
        """The coroutine to spawn when `service` has started."""
        method = getattr(service, attr)
        if self.kind == "task":
            return _call(method)
        if self.kind == "timer":
            interval = self.interval
            if callable(interval):
                interval = _check_interval(interval(service), f"{rec.name}.{attr}")
            return _timer_loop(rec, method, interval, self.immediate)
        return _cron_loop(rec, method, self.expression, self.tz)


async def _call(method: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    await method()


def _mark(func: AsyncMethod, spec: TaskSpec, decorator: str) -> AsyncMethod:
    if not callable(func):
        raise TypeError(f"@{decorator} decorates an async method, got {func!r}.")
    func.__tether_task__ = spec  # type: ignore[attr-defined]
    return func


def task(func: AsyncMethod) -> AsyncMethod:
    """Run this async method as a background task for as long as the service runs.

    It starts after the service's `start` hook returned and is cancelled when the
    service stops. If it raises, the stack crashes, as with `add_task`:

    ```python
    class Consumer(tether.Service):
        @tether.task
        async def consume(self) -> None:
            async for message in self.queue:
                ...
    ```
    """
    return _mark(func, TaskSpec("task"), "task")


def _check_interval(interval: object, where: str = "@timer") -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise TypeError(f"{where}: the interval is a number of seconds, got {interval!r}.")
    if not interval > 0 or math.isinf(interval):
        raise ValueError(
            f"{where}: the interval must be a positive, finite number, got {interval!r}."
        )
    return float(interval)


def timer(
    interval: float | Callable[[Any], float], *, immediate: bool = False
) -> Callable[[AsyncMethod], AsyncMethod]:
    """Call this async method every `interval` seconds while the service runs.

    Ticks follow a fixed schedule: tick *n* is due at `t0 + n * interval` (`t0`
    is when the service started), so lateness never accumulates. A tick that overruns
    its interval is never stacked with the next one: the missed ticks are skipped,
    counted (see [`status`][tether.status]) and logged. With `immediate=True` the first
    tick runs at `t0` instead of `t0 + interval`. An exception crashes the stack.
    `interval` may be a function of the service, read when it starts, for intervals
    that come from configuration:

    ```python
    class Stats(tether.Service):
        @tether.timer(10)
        async def report(self) -> None:
            print(self.counters)

        @tether.timer(lambda self: self.config.flush_every)
        async def flush(self) -> None: ...
    ```
    """
    checked: float | Callable[[Any], float] = (
        interval if callable(interval) else _check_interval(interval)
    )

    def decorate(func: AsyncMethod) -> AsyncMethod:
        return _mark(func, TaskSpec("timer", interval=checked, immediate=immediate), "timer")

    return decorate


def cron(expression: str, *, tz: dt.tzinfo | None = None) -> Callable[[AsyncMethod], AsyncMethod]:
    """Call this async method on a cron schedule while the service runs.

    `expression` is a standard five-field cron line (`"*/5 * * * *"`) read by the
    `croniter` library (`pip install tether[cron]`). Times are in `tz`, UTC by
    default. Runs that would overlap a slow previous run are skipped and counted:

    ```python
    class Reports(tether.Service):
        @tether.cron("0 3 * * *")
        async def nightly(self) -> None: ...
    ```
    """
    try:
        from croniter import croniter  # noqa: PLC0415 - optional extra, loaded on use
    except ImportError:
        raise ImportError(
            "@tether.cron needs the croniter library: pip install 'tether[cron]'"
        ) from None
    given: object = expression
    if not isinstance(given, str) or not croniter.is_valid(given):
        raise ValueError(
            f"@cron({expression!r}) is not a valid cron expression; expected five "
            f"fields such as '*/5 * * * *' (minute hour day month weekday)."
        )

    import datetime as dt  # noqa: PLC0415 - only cron needs it; keeps `import tether` cheap

    def decorate(func: AsyncMethod) -> AsyncMethod:
        return _mark(func, TaskSpec("cron", expression=expression, tz=tz or dt.UTC), "cron")

    return decorate


def _now(tz: dt.tzinfo | None) -> dt.datetime:
    """The wall clock cron schedules follow (a seam for tests on a virtual clock)."""
    import datetime as dt  # noqa: PLC0415 - only cron needs it

    return dt.datetime.now(tz)


def _wake(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


async def sleep_until(rec: Record, deadline: float) -> bool:
    """Sleep until loop time `deadline`; False at once if the service starts stopping."""
    if rec.stopping:
        return False
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bool] = loop.create_future()
    handle = loop.call_at(deadline, _wake, fut)
    sleepers = rec.sleepers
    if sleepers is None:
        sleepers = rec.sleepers = set()
    sleepers.add(fut)
    try:
        return await fut
    finally:
        handle.cancel()
        sleepers.discard(fut)


def _skipped(rec: Record, count: int, what: str) -> None:
    rec.skipped_ticks += count
    logger.warning(
        "%s: %s overran its schedule; skipped %d run(s) (%d so far)",
        rec.name,
        what,
        count,
        rec.skipped_ticks,
    )
    if publishing():
        publish(
            LifecycleEvent(
                kind=EventKind.TIMER_SKIPPED, service=rec.service, count=count, detail=what
            )
        )


async def _timer_loop(
    rec: Record, method: Callable[[], Coroutine[Any, Any, Any]], interval: float, immediate: bool
) -> None:
    loop = asyncio.get_running_loop()
    origin = loop.time()
    tick = 0 if immediate else 1
    what = getattr(method, "__qualname__", repr(method))
    while await sleep_until(rec, origin + tick * interval):
        await method()
        tick += 1
        now = loop.time()
        if now > origin + tick * interval:
            # The run overran: resume at the first tick still in the future.
            upcoming = math.floor((now - origin) / interval) + 1
            _skipped(rec, upcoming - tick, what)
            tick = upcoming


async def _cron_loop(
    rec: Record,
    method: Callable[[], Coroutine[Any, Any, Any]],
    expression: str,
    tz: dt.tzinfo | None,
) -> None:
    import datetime as dt  # noqa: PLC0415 - only cron needs it

    from croniter import croniter  # noqa: PLC0415 - optional extra

    loop = asyncio.get_running_loop()
    what = getattr(method, "__qualname__", repr(method))
    schedule = croniter(expression, _now(tz))
    while True:
        fire_at: dt.datetime = schedule.get_next(dt.datetime)
        delay = (fire_at - _now(tz)).total_seconds()
        if not await sleep_until(rec, loop.time() + max(delay, 0.0)):
            return
        await method()
        now = _now(tz)
        missed = 0
        while True:
            upcoming: dt.datetime = schedule.get_next(dt.datetime)
            if upcoming > now:
                schedule.get_prev(dt.datetime)
                break
            missed += 1
        if missed:
            _skipped(rec, missed, what)
