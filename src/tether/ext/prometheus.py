"""Prometheus metrics of the lifecycle on the health server (`pip install 'tether[prometheus]'`).

Give a [`Metrics`][tether.ext.prometheus.Metrics] to [`Health`][tether.health.Health] and it
answers `GET /metrics` in Prometheus' text format, on its own port or mounted into
your application like the other endpoints:

```python
from tether.ext.prometheus import Metrics
from tether.health import Health

health = Health(port=9100, metrics=Metrics())
tether.run(tether.ext.aiohttp.Server(app, port=8080, health=health))
```

What it reports, for every service of the graph `Health` belongs to (label
`service`; services of the same name are told apart as `Db`, `Db#2`...):

- `tether_service_state` (gauge): 1 for the service's current state, 0 for the
  others (label `state`: `created`, `starting`, `running`, `stopping`, `stopped`,
  `failed`);
- `tether_service_start_duration_seconds`, `tether_service_stop_duration_seconds`
  (gauges): how long its last start took, and its last stop (hook and tasks);
- `tether_service_restarts_total` (counter): restarts by its supervisor;
- `tether_service_tasks` (gauge): background tasks running;
- `tether_service_timer_skipped_ticks_total` (counter): timer ticks skipped because
  a tick overran its interval;
- `tether_service_loop_blocks_total` (counter): times the blocked-loop detector
  (`blocking_timeout`) found the service's code blocking the event loop.

Children a supervisor's `start_child` added (one per connection, say) are not series
of their own: `tether_supervisor_children` (gauge, labels `supervisor` and `state`)
counts each supervisor's children in each state, given and added.

For the process: `tether_ready` (1 while `/readyz` answers 200) and
`tether_draining` (1 once the graph has begun to stop, the `drain` stage). In a
worker of [`tether.prefork`][tether.prefork], for its master: `tether_prefork_workers`
(label `state`: `serving` for the workers ready, `desired` for those wanted),
`tether_prefork_worker_respawns_total` (workers forked again after one died or was
killed) and `tether_prefork_reloads_total` (rolling reloads begun); every other
family then has a `worker` label, the worker's number, so that scrapes reaching one
worker and then another never make a counter seem to reset.

The durations come from the lifecycle events of the code that started the graph:
`tether.run` (and so `tether run` and every pre-fork worker) records them. When you
start the graph yourself, subscribe the `Metrics` around it:
`with tether.subscribe(metrics): async with api: ...`. Behind a port that pre-fork
workers share, each scrape reaches one worker, which reports its own services.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tether._core._records import ServiceState
from tether._process._observe import LifecycleRecorder
from tether.ext._extra import needs
from tether.health import Health

with needs(__name__, "prometheus", "prometheus_client"):
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, Collector

__all__ = ["Metrics"]

_STATES = tuple(state.value for state in ServiceState)


class Metrics(LifecycleRecorder):
    """The lifecycle in Prometheus' terms, for `Health(metrics=Metrics())` to serve.

    `/metrics` answers with tether's metrics (see the table in
    [`tether.ext.prometheus`][tether.ext.prometheus]) followed by those of `registry`:
    by default `prometheus_client`'s global `REGISTRY`, where the metrics of your own
    code and the client's process and platform collectors live, so one scrape gets
    them all; `registry=None` serves tether's alone.

    It is a Prometheus collector too (`collect`), reporting on the one `Health` it was
    given to: register it in a registry of your own to export tether's metrics through
    another exposition (`prometheus_client.start_http_server`, a web framework's
    route), and the endpoint of `Health` then leaves it out of `registry`. And it is a
    lifecycle subscriber: `with tether.subscribe(metrics):` around a graph your own code
    starts records the start and stop durations (`tether.run` records them itself).
    """

    __slots__ = ("_health", "_registry")

    def __init__(self, *, registry: Collector | None = REGISTRY) -> None:
        super().__init__()
        self._registry = registry
        self._health: Health | None = None

    def attach(self, health: Health) -> None:
        """Report on `health`'s graph (`Health(metrics=...)` calls it); one Health only.

        Raises `ValueError` if another `Health` has this `Metrics` already.
        """
        if self._health is not None and self._health is not health:
            raise ValueError(
                f"This tether.ext.prometheus.Metrics reports on another Health already "
                f"({self._health!r}); give each Health a Metrics of its own."
            )
        self._health = health

    def render(self, health: Health) -> tuple[str, bytes]:
        """The body of `GET /metrics` and its content type (Prometheus' text format)."""
        self.attach(health)
        encoder, content_type = choose_encoder("")
        return content_type, encoder(_Exposition(self, self._registry))

    def collect(self) -> Iterator[Metric]:
        """The metric families of tether now (the Prometheus collector protocol)."""
        health = self._health
        if health is None:
            return
        # In a pre-fork worker, the series of this process carry its number: scrapes
        # reach any worker, and one series holding two workers' counters would seem
        # to reset at each switch.
        number = health._worker_number()
        worker = [] if number is None else ["worker"]
        this = [] if number is None else [str(number)]
        state = GaugeMetricFamily(
            "tether_service_state",
            "Lifecycle state of the service: 1 for the current one.",
            labels=["service", "state", *worker],
        )
        start = GaugeMetricFamily(
            "tether_service_start_duration_seconds",
            "How long the last start of the service took.",
            labels=["service", *worker],
        )
        stop = GaugeMetricFamily(
            "tether_service_stop_duration_seconds",
            "How long the last stop of the service took, its hook and its tasks.",
            labels=["service", *worker],
        )
        restarts = CounterMetricFamily(
            "tether_service_restarts",
            "Restarts of the service by its supervisor.",
            labels=["service", *worker],
        )
        tasks = GaugeMetricFamily(
            "tether_service_tasks",
            "Background tasks of the service now running.",
            labels=["service", *worker],
        )
        skipped = CounterMetricFamily(
            "tether_service_timer_skipped_ticks",
            "Timer ticks skipped because a tick overran its interval.",
            labels=["service", *worker],
        )
        blocks = CounterMetricFamily(
            "tether_service_loop_blocks",
            "Times the blocked-loop detector found the service blocking the event loop.",
            labels=["service", *worker],
        )
        children = GaugeMetricFamily(
            "tether_supervisor_children",
            "Children of the supervisor in each state, given and added with start_child.",
            labels=["supervisor", "state", *worker],
        )
        for service in health._service_figures():
            name = service.name
            current = service.state.value
            for value in _STATES:
                state.add_metric([name, value, *this], 1.0 if value == current else 0.0)
            if service.children is not None:
                for value in _STATES:
                    children.add_metric([name, value, *this], service.children.get(value, 0))
            if service.start_duration is not None:
                start.add_metric([name, *this], service.start_duration)
            if service.stop_duration is not None:
                stop.add_metric([name, *this], service.stop_duration)
            restarts.add_metric([name, *this], service.restarts)
            tasks.add_metric([name, *this], service.tasks)
            skipped.add_metric([name, *this], service.skipped_ticks)
            blocks.add_metric([name, *this], service.loop_blocks)
        yield from (state, start, stop, restarts, tasks, skipped, blocks, children)
        ready = GaugeMetricFamily(
            "tether_ready", "1 while the readiness endpoint answers 200.", labels=worker
        )
        ready.add_metric(this, health.ready)
        yield ready
        draining = GaugeMetricFamily(
            "tether_draining",
            "1 once the graph has begun to stop (the drain stage).",
            labels=worker,
        )
        draining.add_metric(this, health.draining)
        yield draining
        master = health._master_figures()
        if master is not None:
            desired, serving, respawns, reloads = master.read()
            workers = GaugeMetricFamily(
                "tether_prefork_workers",
                "Workers of the pre-fork master: ready and serving, and wanted.",
                labels=["state"],
            )
            workers.add_metric(["serving"], serving)
            workers.add_metric(["desired"], desired)
            yield workers
            yield CounterMetricFamily(
                "tether_prefork_worker_respawns",
                "Workers the pre-fork master forked again after one died or was killed.",
                value=respawns,
            )
            yield CounterMetricFamily(
                "tether_prefork_reloads",
                "Rolling reloads the pre-fork master began.",
                value=reloads,
            )


class _Exposition:
    """tether's families, then those of the other registry that are not tether's."""

    __slots__ = ("_metrics", "_other")

    def __init__(self, metrics: Metrics, other: Collector | None) -> None:
        self._metrics = metrics
        self._other = other

    def collect(self) -> Iterable[Metric]:
        names: set[str] = set()
        for family in self._metrics.collect():
            names.add(family.name)
            yield family
        if self._other is not None:
            for family in self._other.collect():
                if family.name not in names:
                    yield family
