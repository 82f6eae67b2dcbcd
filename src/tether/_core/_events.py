"""Lifecycle events: every state change the engine makes, published to subscribers.

Subscribers are scoped with contextvars, so a runner, a test or a logging setup sees
the events of the code it wraps and nothing else. Logging, status output and health
endpoints are built on these events rather than on their own bookkeeping.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._base import ServiceBase
    from ._records import ServiceState

__all__ = ["EventKind", "LifecycleEvent", "subscribe"]

logger = logging.getLogger("tether.events")


class EventKind(enum.StrEnum):
    """What a `LifecycleEvent` reports."""

    PHASE_BEGIN = "phase_begin"
    """A start, stop or reload of the root `service` began: `stage` names the phase
    (`start`, `stop` or `reload`), `count` the services it takes. Published only
    when the phase has something to do, in the task that asked for it."""
    PHASE_END = "phase_end"
    """The phase that `PHASE_BEGIN` announced ended (same `service`, `stage` and
    task); `duration` is its wall time, `error` the failure it raises, if any."""
    STATE = "state"
    """A service changed state (`event.state`); `duration` is the time the
    transition took where it has one (start and stop)."""
    STAGE_BEGIN = "stage_begin"
    """A stage began over `event.count` services."""
    STAGE_END = "stage_end"
    """A stage ended; `duration` is its wall time, `error` the first failure."""
    HOOK = "hook"
    """One service's hook for `event.stage` returned or raised (`error`)."""
    TASK_CRASHED = "task_crashed"
    """A background task raised; `detail` is the task's name."""
    TIMER_SKIPPED = "timer_skipped"
    """A timer tick overran its interval; `count` ticks were skipped."""
    RESTART = "restart"
    """A supervisor restarted `service`; `count` is its restart count so far,
    `error` the exception that caused it (None after a normal exit), `detail` the
    cause in words."""
    THREAD_STALLED = "thread_stalled"
    """The loop of a `ServiceThread` did not answer its heartbeat for `duration`
    seconds; `detail` is where its code is stuck."""
    LOOP_BLOCKED = "loop_blocked"
    """The event loop did not turn for `duration` seconds, longer than the runner's
    `blocking_timeout`; `service` is the service whose code blocked it (None when
    no service's code was found), `detail` where that code was, `count` the number of
    blocks so far in this process. Published once the loop turns again."""


class LifecycleEvent:
    """One lifecycle event, as delivered to subscribers (read-only).

    `kind` says what happened; the other fields are set where they apply:
    `service`, `stage` (a stage's name), `state`, `duration` (seconds),
    `error`, `count`, `detail`; `timestamp` is `time.time()` when it happened.
    """

    # A plain slotted class rather than a dataclass: `import tether` stays cheap.
    __slots__ = (
        "count",
        "detail",
        "duration",
        "error",
        "kind",
        "service",
        "stage",
        "state",
        "timestamp",
    )

    kind: EventKind
    service: ServiceBase | None
    stage: str | None
    state: ServiceState | None
    duration: float | None
    error: BaseException | None
    count: int | None
    detail: str | None
    timestamp: float

    def __init__(
        self,
        kind: EventKind,
        *,
        service: ServiceBase | None = None,
        stage: str | None = None,
        state: ServiceState | None = None,
        duration: float | None = None,
        error: BaseException | None = None,
        count: int | None = None,
        detail: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "kind", kind)
        setattr_(self, "service", service)
        setattr_(self, "stage", stage)
        setattr_(self, "state", state)
        setattr_(self, "duration", duration)
        setattr_(self, "error", error)
        setattr_(self, "count", count)
        setattr_(self, "detail", detail)
        setattr_(self, "timestamp", time.time() if timestamp is None else timestamp)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"LifecycleEvent is read-only; cannot set {name!r}")

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("service", "stage", "state", "duration", "error", "count", "detail")
            if getattr(self, name) is not None
        )
        return f"LifecycleEvent({self.kind.value}{', ' if fields else ''}{fields})"


Subscriber = Callable[[LifecycleEvent], object]

_subscribers: contextvars.ContextVar[tuple[Subscriber, ...]] = contextvars.ContextVar(
    "tether_subscribers", default=()
)


@contextmanager
def subscribe(callback: Subscriber) -> Iterator[None]:
    """Deliver every lifecycle event raised inside the `with` block to `callback`.

    The subscription follows the context: tasks and services started inside the block
    keep publishing to it after their own tasks were created. A callback that raises
    is logged and never disturbs the engine. Callbacks run synchronously on the event
    loop and must be quick:

    ```python
    events = []
    with tether.subscribe(events.append):
        async with Api():
            ...
    ```
    """
    if not callable(callback):
        raise TypeError(f"subscribe() takes a callable, got {callback!r}.")
    token = _subscribers.set((*_subscribers.get(), callback))
    try:
        yield
    finally:
        _subscribers.reset(token)


def publishing() -> bool:
    """Whether anyone listens; lets hot paths skip building events."""
    return bool(_subscribers.get())


def publish(event: LifecycleEvent) -> None:
    """Hand `event` to every subscriber in the current context."""
    for callback in _subscribers.get():
        try:
            callback(event)
        except Exception:
            logger.exception("tether event subscriber %r failed on %s", callback, event.kind)
