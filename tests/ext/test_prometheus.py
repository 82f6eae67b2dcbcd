"""tether.ext.prometheus: /metrics of a real Health, scraped over loopback and read with
prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

import tether
from tests.conftest import bounded
from tests.httpclient import Response, fetch
from tether.ext.prometheus import Metrics
from tether.health import DRAIN, Health


class Scrape:
    """One answer of `/metrics`, parsed: `value(name, **labels)` reads a sample."""

    def __init__(self, response: Response) -> None:
        assert response.status == 200, response
        self.content_type = response.headers["content-type"]
        self.text = response.text
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in self.families.values()
            for sample in family.samples
            if sample.name == name
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples(name).get(tuple(sorted(labels.items())))


async def scrape(health: Health, path: str = "/metrics") -> Scrape:
    assert health.url is not None
    return Scrape(await fetch(health.url + path))


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async def satisfied() -> None:
        while not await check():
            await asyncio.sleep(0.01)

    try:
        await bounded(satisfied())
    except TimeoutError:
        raise AssertionError(f"never saw {what}") from None


class Database(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0)

    async def stop(self) -> None:
        await asyncio.sleep(0)


class Worker(tether.Service):
    """Two background tasks, and a timer whose tick overruns its interval."""

    def __init__(self) -> None:
        self.ticked = asyncio.Event()

    @tether.task
    async def consume(self) -> None:
        await asyncio.Event().wait()

    @tether.task
    async def produce(self) -> None:
        await asyncio.Event().wait()

    @tether.timer(0.01)
    async def flush(self) -> None:
        await asyncio.sleep(0.035)
        self.ticked.set()


class App(tether.Service):
    def __init__(self, health: Health, *others: tether.Service) -> None:
        self.health = health
        self.others = list(others)

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.health, *self.others]


async def test_a_scrape_reports_every_service_and_the_process() -> None:
    """Per service: state, start duration, restarts, tasks, skipped ticks; per process:
    readiness and draining; each family typed and named as Prometheus expects."""
    metrics = Metrics(registry=None)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    worker = Worker()
    with tether.subscribe(metrics):
        async with App(health, Database(), worker):
            await bounded(worker.ticked.wait())

            async def skipped() -> bool:
                found = (await scrape(health)).value(
                    "tether_service_timer_skipped_ticks_total", service="Worker"
                )
                return bool(found)

            await until(skipped, "a skipped tick")
            got = await scrape(health)
    assert got.content_type.startswith("text/plain")
    assert {name: family.type for name, family in got.families.items()} == {
        "tether_service_state": "gauge",
        "tether_service_start_duration_seconds": "gauge",
        "tether_service_stop_duration_seconds": "gauge",
        "tether_service_restarts": "counter",
        "tether_service_tasks": "gauge",
        "tether_service_timer_skipped_ticks": "counter",
        "tether_service_loop_blocks": "counter",
        "tether_supervisor_children": "gauge",  # none here: a family with no samples
        "tether_ready": "gauge",
        "tether_draining": "gauge",
    }
    services = ("App", "Health", "Database", "Worker")
    for service in services:
        assert got.value("tether_service_state", service=service, state="running") == 1
        assert got.value("tether_service_state", service=service, state="stopped") == 0
        assert got.value("tether_service_restarts_total", service=service) == 0
        start = got.value("tether_service_start_duration_seconds", service=service)
        assert start is not None
        assert start > 0
    assert len(got.samples("tether_service_state")) == 6 * len(services)
    assert got.value("tether_service_tasks", service="Worker") == 3  # two tasks, one timer
    assert got.value("tether_service_tasks", service="Database") == 0
    assert got.samples("tether_service_stop_duration_seconds") == {}  # nothing stopped yet
    assert got.value("tether_ready") == 1
    assert got.value("tether_draining") == 0


async def test_draining_and_readiness_follow_the_stop() -> None:
    """Scraped in the drain stage, the process says it drains and is not ready."""
    metrics = Metrics(registry=None)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    seen: list[Scrape] = []

    class Watcher(tether.Service):
        @DRAIN
        async def look(self) -> None:
            await until(lambda: asyncio.sleep(0, health.draining), "draining")
            seen.append(await scrape(health))

    with tether.subscribe(metrics):
        async with App(health, Watcher()):
            seen.append(await scrape(health))
    assert [(s.value("tether_ready"), s.value("tether_draining")) for s in seen] == [
        (1, 0),
        (0, 1),
    ]


async def test_restarts_and_the_stop_they_took_are_counted() -> None:
    """A supervised child that crashes twice: two restarts, and the duration of its stop."""
    crashes = 0
    settled = asyncio.Event()

    class Flaky(tether.Service):
        @tether.task
        async def run_once(self) -> None:
            nonlocal crashes
            if crashes < 2:
                crashes += 1
                raise ConnectionError("lost it")
            settled.set()
            await asyncio.Event().wait()

    metrics = Metrics(registry=None)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    flaky = Flaky()
    supervisor = tether.Supervisor([flaky], max_restarts=5)
    with tether.subscribe(metrics):
        async with App(health, supervisor):
            await bounded(settled.wait())
            got = await scrape(health)
    assert got.value("tether_service_restarts_total", service="Flaky") == 2
    stopped = got.value("tether_service_stop_duration_seconds", service="Flaky")
    assert stopped is not None
    assert stopped >= 0
    assert got.value("tether_service_state", service="Flaky", state="running") == 1


async def test_services_of_the_same_name_are_series_of_their_own() -> None:
    """Two unnamed services of one class: `Database` and `Database#2`, never a duplicate."""
    metrics = Metrics(registry=None)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    with tether.subscribe(metrics):
        async with App(health, Database(), Database()):
            got = await scrape(health)
    assert set(got.samples("tether_service_tasks")) == {
        (("service", "App"),),
        (("service", "Health"),),
        (("service", "Database"),),
        (("service", "Database#2"),),
    }


async def test_the_registry_given_is_served_after_tethers_own() -> None:
    """The application's own metrics come in the same scrape; tether's are not doubled
    when the Metrics is registered in that registry too."""
    registry = CollectorRegistry()
    orders = Counter("orders", "Orders taken.", registry=registry)
    orders.inc(3)
    metrics = Metrics(registry=registry)
    registry.register(metrics)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    with tether.subscribe(metrics):
        async with App(health):
            got = await scrape(health)
    assert got.value("orders_total") == 3
    assert got.text.count("# TYPE tether_ready gauge") == 1


async def test_the_default_registry_brings_the_process_collector() -> None:
    """By default the scrape holds prometheus_client's global registry too."""
    health = Health(drain_delay=0, port=0, metrics=(metrics := Metrics()))
    with tether.subscribe(metrics):
        async with App(health):
            got = await scrape(health)
    assert "tether_ready" in got.families
    assert "python_info" in got.families


async def test_without_recorded_events_durations_are_left_out_and_it_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Started outside `tether.run` and without subscribing the Metrics: everything but
    the durations, and a warning that says how to get them."""
    health = Health(drain_delay=0, port=0, metrics=Metrics(registry=None))
    with caplog.at_level(logging.WARNING, logger="tether.health"):
        async with App(health, Database()):
            got = await scrape(health)
    assert got.samples("tether_service_start_duration_seconds") == {}
    assert got.value("tether_service_state", service="Database", state="running") == 1
    assert "tether.subscribe(metrics)" in caplog.text


async def test_metrics_are_mounted_with_the_other_endpoints_and_under_the_prefix() -> None:
    """`paths` lists /metrics after the prefix; HEAD answers without a body."""
    health = Health(drain_delay=0, port=0, metrics=Metrics(registry=None), prefix="/_")
    assert health.paths == ("/_/livez", "/_/readyz", "/_/status", "/_/metrics")
    async with App(health):
        got = await scrape(health, "/_/metrics")
        assert health.url is not None
        head = await fetch(health.url + "/_/metrics", method="HEAD")
    assert "tether_ready" in got.families
    assert head.status == 200
    assert head.body == b""
    assert Health(drain_delay=0, port=0).paths == ("/livez", "/readyz", "/status")


def test_one_metrics_reports_on_one_health() -> None:
    """A Metrics handed to a second Health is refused there, saying the fix."""
    metrics = Metrics(registry=None)
    Health(port=0, metrics=metrics)
    with pytest.raises(ValueError, match="give each Health a Metrics of its own"):
        Health(port=0, metrics=metrics)


async def test_a_metrics_source_that_fails_answers_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A source whose render raises: `/metrics` answers 500 naming the error; the rest
    of the endpoints go on."""

    class Broken:
        def render(self, health: Health) -> tuple[str, bytes]:
            raise LookupError("no such figure")

    health = Health(drain_delay=0, port=0, metrics=Broken())
    with caplog.at_level(logging.ERROR, logger="tether.health"):
        async with App(health):
            assert health.url is not None
            failed = await fetch(health.url + "/metrics")
            alive = await fetch(health.url + "/livez")
    assert failed.status == 500
    assert "LookupError: no such figure" in failed.text
    assert alive.status == 200
    assert "failed to render" in caplog.text


def test_metrics_registered_in_a_registry_reports_before_any_scrape() -> None:
    """As a collector of another registry, it reports its Health's graph from the start."""
    registry = CollectorRegistry()
    metrics = Metrics(registry=None)
    registry.register(metrics)
    Health(port=0, metrics=metrics)
    assert registry.get_sample_value("tether_ready") == 0
    assert registry.get_sample_value("tether_draining") == 0


def test_health_refuses_what_is_not_a_metrics_source() -> None:
    """`metrics=` wants something with `render`: a plain registry is refused by name."""
    with pytest.raises(TypeError, match=r"tether\.ext\.prometheus\.Metrics"):
        Health(drain_delay=0, port=0, metrics=CollectorRegistry())  # type: ignore[arg-type]


async def test_a_hundred_services_scrape_in_one_answer() -> None:
    """100 services: one scrape holds 6 state series per service, and parses."""
    metrics = Metrics(registry=None)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    services = [Database() for _ in range(100)]
    for index, service in enumerate(services):
        service.name = f"db{index}"  # type: ignore[attr-defined]
    with tether.subscribe(metrics):
        async with App(health, *services):
            got = await scrape(health)
    assert len(got.samples("tether_service_state")) == 6 * 102
    assert len(got.samples("tether_service_start_duration_seconds")) == 102


class Blocker(tether.Service):
    """Blocks the event loop once, then scrapes its own `/metrics` and stops the run."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.scrape: Scrape | None = None

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.health]

    @tether.task
    async def work(self) -> None:
        time.sleep(0.3)  # noqa: ASYNC251 - the block the detector counts

        async def counted() -> bool:
            self.scrape = await scrape(self.health)
            return bool(self.scrape.value("tether_service_loop_blocks_total", service="Blocker"))

        try:
            await until(counted, "the block counted")
        finally:
            self.request_stop()


def test_blocks_of_the_event_loop_are_counted_per_service() -> None:
    """With `blocking_timeout`, the detector's count of a service is its counter."""
    blocker = Blocker(Health(drain_delay=0, port=0, metrics=Metrics(registry=None)))
    with pytest.raises(SystemExit) as exited:
        tether.run(blocker, loop="asyncio", log_level="critical", blocking_timeout=0.1)
    assert exited.value.code == 0
    assert blocker.scrape is not None
    assert blocker.scrape.value("tether_service_loop_blocks_total", service="Blocker") == 1
    assert blocker.scrape.value("tether_service_loop_blocks_total", service="Health") == 0
