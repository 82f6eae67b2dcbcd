"""The health service on its own port: liveness, readiness and status follow the lifecycle."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import tether
from tests.conftest import bounded
from tests.httpclient import fetch
from tether.health import DRAIN, Health


class Database(tether.Service):
    """A dependency that records when its hooks run."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("start:Database")

    async def stop(self) -> None:
        self.log.append("stop:Database")


class Api(tether.Service):
    """The root: depends on the health service and the database."""

    def __init__(self, health: Health, db: Database, log: list[str]) -> None:
        self.health = health
        self.db = db
        self.log = log
        self.on_stop: list[str] = []

    @property
    def dependencies(self) -> list[Any]:
        return [[self.health, self.db]]

    async def stop(self) -> None:
        for path in self.on_stop:
            response = await fetch(f"{self.health.url}{path}")
            self.log.append(f"{path} {response.status} {response.text.strip()}")
        self.log.append("stop:Api")


def _graph(**options: Any) -> tuple[Api, Health, list[str]]:
    log: list[str] = []
    health = Health(port=0, **options)
    return Api(health, Database(log), log), health, log


async def test_endpoints_answer_on_their_own_port() -> None:
    """/livez says ok, /readyz says ready once everything runs, HEAD has no body."""
    api, health, _ = _graph(drain_delay=0)
    async with api:
        live = await fetch(f"{health.url}/livez")
        ready = await fetch(f"{health.url}/readyz")
        head = await fetch(f"{health.url}/readyz", method="HEAD")
    assert (live.status, live.text, live.headers["connection"]) == (200, "ok\n", "close")
    assert (ready.status, ready.text) == (200, "ready\n")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "6")


async def test_status_reports_every_service_of_the_graph() -> None:
    """/status is JSON: readiness and each service's state, uptime, restarts and dependencies."""
    api, health, _ = _graph(drain_delay=0)
    async with api:
        document = (await fetch(f"{health.url}/status")).json()
    assert document["ready"] is True
    assert document["reason"] == "ready"
    services = {entry["name"]: entry for entry in document["services"]}
    assert list(services) == ["Api", "Health", "Database"]
    assert services["Api"]["dependencies"] == ["Health", "Database"]
    for entry in services.values():
        assert entry["state"] == "running"
        assert entry["uptime"] >= 0
        assert entry["restarts"] == 0
        assert entry["loop_blocks"] == 0
        assert entry["error"] is None


async def test_readyz_is_503_while_the_graph_starts() -> None:
    """Until every service has started, /readyz answers 503 'starting'; /livez is 200."""
    gate = asyncio.Event()

    class SlowDatabase(Database):
        async def start(self) -> None:
            await gate.wait()

    health = Health(port=0, drain_delay=0)
    api = Api(health, SlowDatabase([]), [])
    starting = asyncio.create_task(api.__aenter__())
    try:
        while health.url is None:
            await bounded(asyncio.sleep(0.005))
        ready = await fetch(f"{health.url}/readyz")
        live = await fetch(f"{health.url}/livez")
        assert (ready.status, ready.text) == (503, "starting\n")
        assert live.status == 200
    finally:
        gate.set()
        await bounded(starting)
        await api.__aexit__(None, None, None)


async def test_readiness_is_503_before_the_first_stop_hook_runs() -> None:
    """The first stop hook of the graph (the root's) already sees /readyz answer 503."""
    api, _, log = _graph(drain_delay=0)
    api.on_stop = ["/readyz"]
    async with api:
        pass
    assert log == ["start:Database", "/readyz 503 stopping", "stop:Api", "stop:Database"]


async def test_the_drain_stage_runs_before_any_stopping_or_stop_hook() -> None:
    """Readiness turns in the drain stage, which ends before the stopping stage begins."""
    api, _, _ = _graph(drain_delay=0)
    events: list[str] = []

    def record(event: tether.LifecycleEvent) -> None:
        if event.kind in (tether.EventKind.STAGE_BEGIN, tether.EventKind.STAGE_END):
            events.append(f"{event.kind.value}:{event.stage}")
        elif event.kind is tether.EventKind.STATE and event.state is tether.ServiceState.STOPPING:
            events.append(f"stopping:{type(event.service).__name__}")

    with tether.subscribe(record):
        async with api:
            pass
    stop_phase = events[events.index("stage_begin:drain") :]
    assert stop_phase[:2] == ["stage_begin:drain", "stage_end:drain"]
    assert stop_phase[2] == "stage_begin:stop"


async def test_liveness_stays_200_until_the_health_service_stops() -> None:
    """The last stop hook before the health service's own still gets /livez 200."""
    api, _, log = _graph(drain_delay=0)
    api.on_stop = ["/livez"]
    async with api:
        pass
    assert "/livez 200 ok" in log


async def test_drain_delay_keeps_everything_serving_while_not_ready() -> None:
    """For drain_delay seconds /readyz is 503 while every service still runs."""
    api, health, _ = _graph(drain_delay=0.3)
    seen: list[tuple[int, bool, bool]] = []
    durations: list[float] = []

    def record(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.STAGE_END and event.stage == "drain":
            assert event.duration is not None
            durations.append(event.duration)

    async def poll(url: str) -> None:
        while True:
            response = await fetch(f"{url}/readyz")
            if response.status == 503:
                seen.append((response.status, api.running, api.db.running))
                return
            await asyncio.sleep(0.01)

    with tether.subscribe(record):
        async with api:
            assert health.url is not None
            poller = asyncio.create_task(poll(health.url))
            await asyncio.sleep(0.02)
            api.request_stop()
        await bounded(poller)
    assert seen == [(503, True, True)]
    assert durations[0] >= 0.3


async def test_a_graph_that_never_became_ready_skips_the_drain_delay() -> None:
    """A failed start rolls back at once: no traffic was sent, so no drain delay."""

    health = Health(port=0, drain_delay=60)

    class Broken(Database):
        async def start(self) -> None:
            while health.url is None:  # the health service is up, then this fails
                await asyncio.sleep(0.005)
            raise RuntimeError("no database")

    api = Api(health, Broken([]), [])
    with pytest.raises(RuntimeError, match="no database"):
        await bounded(api.__aenter__(), 5)
    assert tether.status(health).state is tether.ServiceState.STOPPED


async def test_readyz_waits_for_services_that_join_the_graph() -> None:
    """A second root sharing the health service makes /readyz 503 until it is running."""
    gate = asyncio.Event()
    health = Health(port=0, drain_delay=0)

    class Late(tether.Service):
        async def start(self) -> None:
            await gate.wait()

    class Second(tether.Service):
        def __init__(self) -> None:
            self.late = Late()

        @property
        def dependencies(self) -> list[Any]:
            return [health, self.late]

    async with Api(health, Database([]), []):
        assert (await fetch(f"{health.url}/readyz")).status == 200
        second = Second()
        joining = asyncio.create_task(second.__aenter__())
        while tether.status(second.late).state is not tether.ServiceState.STARTING:
            await bounded(asyncio.sleep(0.005))
        during = await fetch(f"{health.url}/readyz")
        gate.set()
        await bounded(joining)
        after = await fetch(f"{health.url}/readyz")
        await second.__aexit__(None, None, None)
    assert (during.status, during.text) == (503, "Late is starting\n")
    assert after.status == 200


async def test_unknown_paths_methods_and_garbage_get_clear_answers() -> None:
    """404 names the endpoints, 405 says Allow: GET, HEAD, a malformed request gets 400."""
    api, health, _ = _graph(drain_delay=0)
    async with api:
        assert health.url is not None
        missing = await fetch(f"{health.url}/nope")
        post = await fetch(f"{health.url}/livez", method="POST")
        host, port = health.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HELLO\r\n\r\n")
        garbage = await bounded(reader.read())
        writer.close()
        await writer.wait_closed()
    assert missing.status == 404
    assert "/livez, /readyz, /status" in missing.text
    assert (post.status, post.headers["allow"]) == (405, "GET, HEAD")
    assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_prefix_moves_the_endpoints() -> None:
    """prefix='/_' serves /_/livez and nothing at /livez."""
    health = Health(port=0, prefix="/_/", drain_delay=0)
    async with health:
        assert health.paths == ("/_/livez", "/_/readyz", "/_/status")
        assert (await fetch(f"{health.url}/_/livez")).status == 200
        assert (await fetch(f"{health.url}/livez")).status == 404


async def test_a_prebound_socket_is_served_and_stays_the_owners() -> None:
    """With sock=, it serves on a duplicate: the socket stays open, it can start again."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        health = Health(sock=listener, drain_delay=0)
        for _ in range(2):
            async with health:
                assert health.port == port
                assert (await fetch(f"http://127.0.0.1:{port}/livez")).status == 200
            assert listener.fileno() != -1
    finally:
        listener.close()


def test_bad_arguments_are_refused_with_the_reason() -> None:
    """Each mistake is named: ports, sockets, a host without port, delays, prefixes."""
    with pytest.raises(ValueError, match=r"port= must be an integer from 0 to 65535"):
        Health(port=70000)
    with pytest.raises(TypeError, match=r"sock= must be a bound socket.socket, got 3 \(int\)"):
        Health(sock=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"needs port= too"):
        Health(host="0.0.0.0")  # noqa: S104 - the address is never bound here
    with pytest.raises(ValueError, match=r"drain_delay= must be a finite number of seconds"):
        Health(drain_delay=-1)
    with pytest.raises(ValueError, match=r"prefix= must be '' or start with '/'"):
        Health(prefix="health")
    with socket.socket() as sock, pytest.raises(TypeError, match="not both"):
        Health(sock=sock, port=1)


def test_drain_is_a_stage_before_stopping_for_every_service_at_once() -> None:
    """DRAIN sits right before `stopping` and visits every service at once."""
    assert DRAIN.before is tether.STOPPING
    assert DRAIN.direction is tether.Direction.GATHER
