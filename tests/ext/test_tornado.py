"""tether.ext.tornado: a real Tornado application and HTTPServer on loopback."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("tornado")
pytest.importorskip("aiohttp")  # the load test's client

import aiohttp
import tornado.web

import tether
from tests.conftest import bounded
from tests.httpclient import fetch
from tests.serving import Gate, drain_under_load, indices_in_order
from tether.ext.tornado import Server, get
from tether.health import Health


class Database(tether.Service):
    """A component the application uses; records its starts and stops."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def start(self) -> None:
        self.log.append("start:Database")

    async def stop(self) -> None:
        self.log.append("stop:Database")


class Rows(tornado.web.RequestHandler):
    def get(self) -> None:
        db = get(self, Database)
        self.write({"running": db.running})


class Work(tornado.web.RequestHandler):
    def get(self, index: str) -> None:
        self.write(index)


class Slow(tornado.web.RequestHandler):
    def initialize(self, gate: Gate) -> None:
        self.gate = gate

    async def get(self) -> None:
        self.write(await self.gate.hold())


def application(gate: Gate | None = None) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/rows", Rows),
            (r"/work/(\d+)", Work),
            (r"/slow", Slow, {"gate": gate or Gate(1)}),
        ]
    )


async def test_tornado_starts_after_what_it_uses_and_stops_before_it() -> None:
    """Database starts, Tornado serves, Tornado stops, then the database."""
    container = tether.Container()
    server = Server(application(), port=0, container=container, uses=[Database])
    db = container.get(Database)

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.service is server and event.kind is tether.EventKind.STATE:
            db.log.append(f"server {event.state}")

    with tether.subscribe(on_event):
        async with server:
            response = await fetch(f"{server.url}/rows")
            db.log.append(f"request answered {response.status}")
    assert response.json() == {"running": True}
    assert db.log == [
        "start:Database",
        "server starting",
        "server running",
        "request answered 200",
        "server stopping",
        "server stopped",
        "stop:Database",
    ]
    assert server.url is None


async def test_health_answers_in_front_of_the_application() -> None:
    """/livez and /readyz on Tornado's port; other paths reach the application."""
    server = Server(application(), port=0, health=Health(drain_delay=0))
    async with server:
        live = await fetch(f"{server.url}/livez")
        ready = await fetch(f"{server.url}/readyz")
        work = await fetch(f"{server.url}/work/3")
    assert (live.status, live.text, ready.status, work.text) == (200, "ok\n", 200, "3")


async def test_keep_alive_clients_get_connection_close_during_the_drain() -> None:
    """From the drain stage on, responses carry Connection: close."""
    health = Health(drain_delay=0.3)
    server = Server(application(), port=0, health=health)
    await server.__aenter__()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/work/1") as before:
                await before.read()
            stopping = asyncio.create_task(server.__aexit__(None, None, None))
            while health.ready:
                await bounded(asyncio.sleep(0.005))
            async with session.get(f"{server.url}/work/2") as during:
                await during.read()
            await bounded(stopping)
    finally:
        if server.running:
            await server.__aexit__(None, None, None)
    assert before.headers.get("Connection") is None
    assert during.headers["Connection"] == "close"


async def test_tornado_drain_under_load_fails_no_request() -> None:
    """Hundreds of keep-alive requests across a stop, slow ones in their handlers when
    the stop hook begins: every one answered, none failed."""
    gate = Gate(10)
    server = Server(application(gate), port=0, health=Health(drain_delay=0.3), name="tornado")
    outcome = await drain_under_load(server, server, gate)
    assert outcome.failures == []
    assert len(outcome.fast) >= 200
    assert all(status == 200 for _, status, _, _ in outcome.fast)
    assert indices_in_order(outcome)
    assert outcome.in_flight_at_stop == 10
    assert [body for _, body, _ in outcome.slow] == ["slow done"] * 10


async def test_the_server_starts_again_on_the_same_port() -> None:
    """A stopped server can be started again; the second run serves as the first."""
    first = Server(application(), port=0)
    async with first:
        port = first.port
    again = Server(application(), port=port)
    async with again:
        assert (await fetch(f"{again.url}/work/5")).text == "5"


def test_what_is_not_an_application_is_refused() -> None:
    """The constructor names the mistake."""
    with pytest.raises(TypeError, match=r"serves a tornado\.web\.Application"):
        Server("app", port=0)
    with pytest.raises(ValueError, match="options= cannot set request_callback"):
        Server(application(), port=0, options={"request_callback": print})


def test_get_without_a_container_says_how_to_serve() -> None:
    """A handler whose server has no container."""
    with pytest.raises(tether.InjectionError, match="No tether container reaches"):
        get(object(), Database)
