"""What a process records of its lifecycle for metrics, and the spans it makes of it.

Both are lifecycle subscribers, so they see what the engine publishes and nothing
else. The runner installs them in the context that starts the graph, beside its
logging ([`observing`][tether._process._observe.observing]): a `LifecycleRecorder`
always (cheap: the runner publishes events for its log anyway), and, when
OpenTelemetry's API is installed, a `LifecycleTracer` (`_tracing`, which imports it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tether._core._events import EventKind, LifecycleEvent, Subscriber, _subscribers, subscribe
from tether._core._records import ServiceState

if TYPE_CHECKING:
    from tether._core._base import ServiceBase

__all__ = ["LifecycleRecorder", "ServiceFigures", "observing", "recorder_in_context"]

logger = logging.getLogger("tether.observe")

_STARTING = ServiceState.STARTING
_STOPPING = ServiceState.STOPPING


class ServiceFigures:
    """What the events said of one service: its last start and stop, its skipped ticks."""

    __slots__ = ("last_began", "skipped_ticks", "start_duration", "stop_duration")

    def __init__(self) -> None:
        self.start_duration: float | None = None
        """Seconds its last start took (to running, or to a failed start)."""
        self.stop_duration: float | None = None
        """Seconds its last stop took (hook and tasks)."""
        self.skipped_ticks = 0
        """Timer ticks skipped since it was first seen, across its runs."""
        self.last_began: ServiceState | None = None
        """STARTING or STOPPING: which transition a FAILED state ends."""


class LifecycleRecorder:
    """A lifecycle subscriber keeping, per service, what the records do not keep.

    A service's record knows its state, restarts, tasks and the ticks skipped in its
    current run; how long its starts and stops took is only said by the events, and so
    are the ticks it skipped in earlier runs. A service's figures are forgotten when the
    service is garbage-collected.
    """

    __slots__ = ("_figures",)

    def __init__(self) -> None:
        self._figures: dict[int, tuple[object, ServiceFigures]] = {}

    def figures(self, service: ServiceBase) -> ServiceFigures | None:
        """What was recorded of `service`, or None if no event named it."""
        found = self._figures.get(id(service))
        return None if found is None else found[1]

    def _of(self, service: ServiceBase) -> ServiceFigures:
        key = id(service)
        found = self._figures.get(key)
        if found is not None:
            return found[1]
        figures = ServiceFigures()
        figures_map = self._figures

        def forget(_: object, key: int = key) -> None:
            figures_map.pop(key, None)

        try:
            keeper: object = weakref.ref(service, forget)
        except TypeError:  # a class with __slots__ and no __weakref__: kept for good
            keeper = service
        figures_map[key] = (keeper, figures)
        return figures

    def __call__(self, event: LifecycleEvent) -> None:
        kind = event.kind
        service = event.service
        if service is None:
            return
        if kind is EventKind.STATE:
            state = event.state
            if state is _STARTING or state is _STOPPING:
                self._of(service).last_began = state
                return
            duration = event.duration
            if duration is None:
                return
            figures = self._of(service)
            if state is ServiceState.RUNNING:
                figures.start_duration = duration
            elif state is ServiceState.STOPPED:
                figures.stop_duration = duration
            elif state is ServiceState.FAILED:
                if figures.last_began is _STARTING:
                    figures.start_duration = duration
                else:
                    figures.stop_duration = duration
        elif kind is EventKind.TIMER_SKIPPED:
            self._of(service).skipped_ticks += event.count or 0


def recorder_in_context() -> LifecycleRecorder | None:
    """The recorder subscribed in the current context (the runner's), if any."""
    for callback in _subscribers.get():
        if isinstance(callback, LifecycleRecorder):
            return callback
    return None


@contextlib.contextmanager
def observing() -> Iterator[None]:
    """Subscribe what the runner records: a `LifecycleRecorder`, and spans when possible.

    The spans need OpenTelemetry's API (`pip install 'tether[otel]'`); without it
    nothing is traced and nothing is said. A tracer already subscribed around the
    runner is not doubled.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(subscribe(LifecycleRecorder()))
        tracer = _tracer()
        if tracer is not None:
            stack.enter_context(subscribe(tracer))
        yield


def _tracer() -> Subscriber | None:
    """A new `LifecycleTracer`, unless OpenTelemetry is missing or one is subscribed."""
    try:
        if importlib.util.find_spec("opentelemetry.trace") is None:
            return None
    except ModuleNotFoundError:  # not even the namespace package
        return None
    try:
        from ._tracing import LifecycleTracer  # noqa: PLC0415 - only where the API is installed
    except ImportError as exc:
        logger.warning(
            "OpenTelemetry is installed but could not be imported (%s): the lifecycle is "
            "not traced. Reinstall it: pip install 'tether[otel]'.",
            exc,
        )
        return None
    if any(isinstance(callback, LifecycleTracer) for callback in _subscribers.get()):
        return None
    return LifecycleTracer()
