"""tether.ext.asgi: Starlette and FastAPI served by a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("aiohttp")  # the load test's client

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import tether
from tests.conftest import bounded
from tests.httpclient import fetch
from tests.serving import Gate, drain_under_load, indices_in_order
from tether.ext.asgi import LifespanError, Scope, Server, get
from tether.health import Health


class Database(tether.Service):
    """A component the application uses; counts its starts and stops in a log."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def start(self) -> None:
        self.log.append("start:Database")

    async def stop(self) -> None:
        self.log.append("stop:Database")


async def _rows(request: Request) -> JSONResponse:
    db = get(request, Database)
    return JSONResponse({"running": db.running, "answer": request.state.answer})


def _lifespan_app(container: tether.Container) -> Starlette:
    """A Starlette app whose lifespan records what it sees of the graph."""
    db = container.get(Database)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        db.log.append(f"lifespan startup (db running: {db.running})")
        yield {"answer": 42}
        db.log.append(f"lifespan shutdown (db running: {db.running})")

    return Starlette(routes=[Route("/rows", _rows)], lifespan=lifespan)


async def test_lifespan_startup_sees_the_graph_started_and_shutdown_comes_before_it_stops() -> None:
    """Dependencies start, lifespan startup, serving, lifespan shutdown, dependencies stop."""
    container = tether.Container()
    server = Server(_lifespan_app(container), port=0, container=container, uses=[Database])
    db = container.get(Database)

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.service is server and event.kind is tether.EventKind.STATE:
            db.log.append(f"server {event.state}")

    with tether.subscribe(on_event):
        async with server:
            response = await fetch(f"{server.url}/rows")
            db.log.append(f"request answered {response.status}")
    assert db.log == [
        "start:Database",
        "server starting",
        "lifespan startup (db running: True)",
        "server running",
        "request answered 200",
        "server stopping",
        "lifespan shutdown (db running: True)",
        "server stopped",
        "stop:Database",
    ]


async def test_lifespan_state_and_the_container_reach_every_request() -> None:
    """What the lifespan yields is in request.state; get(request, T) finds the container."""
    container = tether.Container()
    server = Server(_lifespan_app(container), port=0, container=container, uses=[Database])
    async with server:
        response = await fetch(f"{server.url}/rows")
    assert response.json() == {"running": True, "answer": 42}


async def test_nothing_starts_twice_when_the_lifespan_enters_the_graphs_services() -> None:
    """A lifespan that starts the database itself shares the graph's running one."""
    container = tether.Container()
    db = container.get(Database)
    seen: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with container.started(Database) as started:
            seen.append(started is db)
            yield

    server = Server(Starlette(lifespan=lifespan), port=0, container=container, uses=[Database])
    async with server:
        pass
    assert seen == [True]
    assert db.log == ["start:Database", "stop:Database"]


async def test_a_failing_lifespan_startup_fails_the_start_with_the_apps_exception() -> None:
    """The app's own exception propagates from start; the database is stopped again."""
    container = tether.Container()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("cannot warm the cache")
        yield  # pragma: no cover

    server = Server(Starlette(lifespan=lifespan), port=0, container=container, uses=[Database])
    with pytest.raises(RuntimeError, match="cannot warm the cache") as raised:
        await server.__aenter__()
    assert "tether: raised by the ASGI lifespan startup of Server" in (raised.value.__notes__)
    assert container.get(Database).log == ["start:Database", "stop:Database"]
    assert server.url is None


async def _no_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    """A raw ASGI app that serves HTTP only, as many small apps do."""
    assert scope["type"] == "http", "only http"
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"plain"})


async def test_an_app_without_lifespan_is_served_unless_lifespan_on_is_asked() -> None:
    """lifespan='auto' serves an app that refuses the protocol; 'on' fails its start."""
    server = Server(_no_lifespan, port=0)
    async with server:
        assert (await fetch(f"{server.url}/")).text == "plain"
    strict = Server(_no_lifespan, port=0, lifespan="on")
    with pytest.raises(LifespanError, match="ended the ASGI lifespan before its startup"):
        await strict.__aenter__()


async def test_health_answers_in_front_of_the_application() -> None:
    """/livez, /readyz and /status are answered on the app's port; other paths reach the app."""
    container = tether.Container()
    server = Server(
        _lifespan_app(container),
        port=0,
        container=container,
        uses=[Database],
        health=Health(drain_delay=0),
    )
    async with server:
        live = await fetch(f"{server.url}/livez")
        ready = await fetch(f"{server.url}/readyz")
        status = (await fetch(f"{server.url}/status")).json()
        rows = await fetch(f"{server.url}/rows")
    assert (live.status, live.text, ready.status) == (200, "ok\n", 200)
    assert [entry["name"] for entry in status["services"]] == ["Server", "Database", "Health"]
    assert rows.status == 200


async def test_keep_alive_clients_get_connection_close_during_the_drain() -> None:
    """During the drain every response carries Connection: close."""
    health = Health(drain_delay=0.3)

    async def hello(_: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = Server(Starlette(routes=[Route("/", hello)]), port=0, health=health)
    await server.__aenter__()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/") as before:
                await before.read()
            stopping = asyncio.create_task(server.__aexit__(None, None, None))
            while health.ready:
                await bounded(asyncio.sleep(0.005))
            async with session.get(f"{server.url}/") as during:
                await during.read()
            await bounded(stopping)
    finally:
        if server.running:
            await server.__aexit__(None, None, None)
    assert before.headers.get("Connection") is None
    assert during.headers["Connection"] == "close"


async def test_drain_under_load_fails_no_request() -> None:
    """Hundreds of keep-alive requests across a stop: every one answered, none failed."""
    gate = Gate(10)

    async def work(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["index"])

    async def slow(_: Request) -> PlainTextResponse:
        return PlainTextResponse(await gate.hold())

    app = Starlette(routes=[Route("/work/{index}", work), Route("/slow", slow)])
    server = Server(app, port=0, health=Health(drain_delay=0.5), name="api")
    outcome = await drain_under_load(server, server, gate)

    assert outcome.failures == []
    assert len(outcome.fast) >= 200
    assert all(status == 200 for _, status, _, _ in outcome.fast)
    assert indices_in_order(outcome)
    assert outcome.in_flight_at_stop == 10
    assert outcome.slow == [(200, "slow done", "close")] * 10
    assert outcome.closing >= 1


async def test_serves_a_prebound_socket_and_leaves_it_open() -> None:
    """sock= (as a pre-fork master hands it over) is served; the socket stays its owner's."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        server = Server(_no_lifespan, sock=listener)
        async with server:
            assert server.port == listener.getsockname()[1]
            response = await fetch(f"http://127.0.0.1:{server.port}/")
        assert response.text == "plain"
        assert listener.fileno() != -1
    finally:
        listener.close()


async def test_a_port_in_use_fails_the_start_after_undoing_the_lifespan() -> None:
    """OSError from binding propagates; the lifespan shutdown ran, the database stopped."""
    taken = socket.create_server(("127.0.0.1", 0))
    container = tether.Container()
    try:
        server = Server(
            _lifespan_app(container),
            port=taken.getsockname()[1],
            container=container,
            uses=[Database],
        )
        with pytest.raises(OSError, match="in use"):
            await server.__aenter__()
    finally:
        taken.close()
    assert container.get(Database).log == [
        "start:Database",
        "lifespan startup (db running: True)",
        "lifespan shutdown (db running: True)",
        "stop:Database",
    ]


def test_bad_arguments_are_refused_with_the_reason() -> None:
    """Reserved or unknown uvicorn options, an unknown lifespan mode, a non-app are named."""
    with pytest.raises(ValueError, match=r"options= cannot set lifespan, port"):
        Server(_no_lifespan, options={"port": 1, "lifespan": "on", "http": "h11"})
    with pytest.raises(ValueError, match=r"lifespan= must be one of 'auto', 'on', 'off'"):
        Server(_no_lifespan, lifespan="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"options= holds what uvicorn\.Config does not take"):
        Server(_no_lifespan, options={"colour": "blue"})
    with pytest.raises(TypeError, match="serves an ASGI application"):
        Server("app:main")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pass container= too"):
        Server(_no_lifespan, uses=[Database])


async def test_the_server_can_be_started_again() -> None:
    """After a stop, the same server runs the lifespan and serves again."""
    container = tether.Container()
    server = Server(_lifespan_app(container), port=0, container=container, uses=[Database])
    for _ in range(2):
        async with server:
            assert (await fetch(f"{server.url}/rows")).status == 200
        assert server.url is None
    assert container.get(Database).log.count("lifespan startup (db running: True)") == 2
