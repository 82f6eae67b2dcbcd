"""tether.ext.aiohttp: a real aiohttp server on loopback, as a service of the graph."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("aiohttp")

import aiohttp
from aiohttp import web

import tether
from tests.conftest import bounded
from tests.httpclient import fetch
from tests.serving import Gate, drain_under_load, indices_in_order
from tether.ext.aiohttp import Server, aget, get
from tether.health import Health


class Database(tether.Service):
    """A component handlers use; records its hooks in a shared log."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.rows = {"greeting": "hello"}

    async def start(self) -> None:
        self.log.append("start:Database")

    async def stop(self) -> None:
        self.log.append("stop:Database")


class Outsider(tether.Service):
    """A service no server lists."""


class Client:
    """Built by an async factory."""

    def __init__(self, base: str) -> None:
        self.base = base


async def make_client() -> Client:
    await asyncio.sleep(0)
    return Client("https://example.invalid")


def _app(container: tether.Container) -> web.Application:
    async def row(request: web.Request) -> web.Response:
        db = get(request, Database)
        return web.json_response(
            {"value": db.rows[request.match_info["key"]], "same": db is container.get(Database)}
        )

    async def outsider(request: web.Request) -> web.Response:
        try:
            get(request, Outsider)
        except tether.ServiceStateError as exc:
            return web.Response(status=500, text=str(exc))
        return web.Response(text="unexpected")

    async def client(request: web.Request) -> web.Response:
        return web.Response(text=(await aget(request, Client)).base)

    app = web.Application()
    app.router.add_get("/rows/{key}", row)
    app.router.add_get("/outsider", outsider)
    app.router.add_get("/client", client)
    return app


def _server(**options: object) -> tuple[Server, tether.Container]:
    container = tether.Container()
    container.register(make_client)
    server = Server(_app(container), port=0, container=container, uses=[Database], **options)  # type: ignore[arg-type]
    return server, container


async def test_handlers_get_the_running_components_of_the_graph() -> None:
    """get(request, Database) is the container's instance, started before the server."""
    server, container = _server()
    async with server:
        response = await fetch(f"{server.url}/rows/greeting")
        db = container.get(Database)
        assert db.running
    assert response.json() == {"value": "hello", "same": True}
    assert db.log == ["start:Database", "stop:Database"]


async def test_aget_awaits_async_providers() -> None:
    """aget(request, Client) builds what an async factory provides."""
    server, _ = _server()
    async with server:
        response = await fetch(f"{server.url}/client")
    assert response.text == "https://example.invalid"


async def test_a_service_outside_the_graph_is_refused_with_the_fix() -> None:
    """A handler asking for a service the server was not started with gets told what to do."""
    server, _ = _server()
    async with server:
        response = await fetch(f"{server.url}/outsider")
    assert response.status == 500
    assert response.text == (
        "Outsider is created, so the handler of /outsider cannot use it: handlers get the "
        "services their server was started with. List it in Server(..., uses=[Outsider]) "
        "or inject it into the server."
    )


async def test_get_without_a_container_says_how_to_bind_one() -> None:
    """A server created without container= cannot resolve; the error says so."""
    messages: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        try:
            get(request, Database)
        except tether.InjectionError as exc:
            messages.append(str(exc))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    server = Server(app, port=0)
    async with server:
        await fetch(f"{server.url}/")
    assert messages == [
        (
            "No tether container is bound to the application serving /: create its server "
            "with tether.ext.aiohttp.Server(app, container=container, uses=[...])."
        )
    ]


async def test_the_app_startup_and_cleanup_hooks_run_inside_the_graph() -> None:
    """on_startup runs after what the server uses started; on_cleanup before it stops."""
    container = tether.Container()
    db = container.get(Database)
    app = web.Application()

    async def startup(_: web.Application) -> None:
        db.log.append(f"app startup (db running: {db.running})")

    async def cleanup(_: web.Application) -> None:
        db.log.append(f"app cleanup (db running: {db.running})")

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    async with Server(app, port=0, container=container, uses=[Database]):
        db.log.append("serving")
    assert db.log == [
        "start:Database",
        "app startup (db running: True)",
        "serving",
        "app cleanup (db running: True)",
        "stop:Database",
    ]


async def test_keep_alive_clients_get_connection_close_during_the_drain() -> None:
    """Before the stop a kept-alive response has no Connection: close; during the drain it has."""
    health = Health(drain_delay=0.3)
    server, _ = _server(health=health)
    await server.__aenter__()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/rows/greeting") as before:
                await before.read()
            stopping = asyncio.create_task(server.__aexit__(None, None, None))
            while health.ready:
                await bounded(asyncio.sleep(0.005))
            async with session.get(f"{server.url}/rows/greeting") as during:
                await during.read()
            await bounded(stopping)
    finally:
        if server.running:
            await server.__aexit__(None, None, None)
    assert (before.version, before.headers.get("Connection")) == (aiohttp.HttpVersion11, None)
    assert during.headers["Connection"] == "close"


async def test_in_flight_requests_complete_when_the_server_stops() -> None:
    """A request still in its handler when the stop hook begins gets its full response."""
    gate = Gate(1)
    app = web.Application()

    async def slow(_: web.Request) -> web.Response:
        return web.Response(text=await gate.hold())

    app.router.add_get("/slow", slow)
    server = Server(app, port=0)
    seen: list[str] = []

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.service is server and event.state is tether.ServiceState.STOPPING:
            seen.append(f"stop hook begins with {gate.entered - gate.finished} in flight")
            asyncio.get_running_loop().call_later(0.05, gate.release.set)

    with tether.subscribe(on_event):
        await server.__aenter__()
        try:
            request = asyncio.create_task(fetch(f"{server.url}/slow"))
            await bounded(gate.all_in.wait())
        finally:
            await server.__aexit__(None, None, None)
    response = await bounded(request)
    assert seen == ["stop hook begins with 1 in flight"]
    assert (response.status, response.text, response.headers["connection"]) == (
        200,
        "slow done",
        "close",
    )


async def test_drain_under_load_fails_no_request() -> None:
    """Hundreds of keep-alive requests across a stop: every one answered, none failed."""
    gate = Gate(10)
    app = web.Application()

    async def work(request: web.Request) -> web.Response:
        await asyncio.sleep(0)
        return web.Response(text=request.match_info["index"])

    async def slow(_: web.Request) -> web.Response:
        return web.Response(text=await gate.hold())

    app.router.add_get("/work/{index}", work)
    app.router.add_get("/slow", slow)
    server = Server(app, port=0, health=Health(drain_delay=0.5), name="api")
    outcome = await drain_under_load(server, server, gate)

    assert outcome.failures == []
    assert len(outcome.fast) >= 200
    assert all(status == 200 for _, status, _, _ in outcome.fast)
    assert indices_in_order(outcome)
    assert outcome.in_flight_at_stop == 10
    assert outcome.slow == [(200, "slow done", "close")] * 10
    assert outcome.removed_at_response is not None
    assert outcome.closing >= 1  # keep-alive clients were told to reconnect during the drain


async def test_health_mounted_in_the_application() -> None:
    """/livez, /readyz and /status answer on the application's own port."""
    server, _ = _server(health=Health(drain_delay=0))
    async with server:
        live = await fetch(f"{server.url}/livez")
        ready = await fetch(f"{server.url}/readyz")
        status = (await fetch(f"{server.url}/status")).json()
        post = await fetch(f"{server.url}/readyz", method="POST")
    assert (live.status, live.text) == (200, "ok\n")
    assert (ready.status, ready.text) == (200, "ready\n")
    assert [entry["name"] for entry in status["services"]] == ["Server", "Database", "Health"]
    assert (post.status, post.headers["allow"]) == (405, "GET, HEAD")


async def test_serves_a_prebound_socket_and_leaves_it_open() -> None:
    """sock= (as a pre-fork master hands it over) is served; the socket stays its owner's."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        server, _ = _server()
        server = Server(_app(tether.Container()), sock=listener)
        async with server:
            assert server.port == listener.getsockname()[1]
            response = await fetch(f"http://127.0.0.1:{server.port}/client")
        assert response.status == 500  # no container here: the route exists and answered
        assert listener.fileno() != -1
    finally:
        listener.close()


async def test_a_port_in_use_fails_the_start_and_stops_what_started() -> None:
    """OSError from binding propagates; the database that started for it is stopped."""
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        container = tether.Container()
        server = Server(
            web.Application(), port=taken.getsockname()[1], container=container, uses=[Database]
        )
        with pytest.raises(OSError, match="in use"):
            await server.__aenter__()
    finally:
        taken.close()
    assert container.get(Database).log == ["start:Database", "stop:Database"]


def test_bad_arguments_are_refused_with_the_reason() -> None:
    """A frozen app, uses= without a container, an instance in uses=, sock with port."""
    frozen = web.Application()
    frozen.freeze()
    with pytest.raises(tether.ServiceStateError, match="already started"):
        Server(frozen)
    with pytest.raises(TypeError, match="pass container= too"):
        Server(web.Application(), uses=[Database])
    with pytest.raises(TypeError, match=r"uses= takes types .* got <Database"):
        Server(web.Application(), container=tether.Container(), uses=[Database()])
    with socket.socket() as sock, pytest.raises(TypeError, match="not both"):
        Server(web.Application(), sock=sock, port=8080)
    with pytest.raises(TypeError, match=r"serves a web\.Application"):
        Server(object())  # type: ignore[arg-type]


async def test_the_server_can_be_started_again() -> None:
    """After a stop, the same server (and application) serves again."""
    server, _ = _server()
    for _ in range(2):
        async with server:
            assert (await fetch(f"{server.url}/rows/greeting")).status == 200
        assert server.url is None


def test_uses_with_an_async_provider_says_to_use_aget_instead() -> None:
    """uses= resolves with sync providers; the error adds that aget needs no listing."""
    container = tether.Container()
    container.register(make_client)
    with pytest.raises(tether.InjectionError) as raised:
        Server(web.Application(), container=container, uses=[Client])
    assert "await aget(request, T)" in raised.value.__notes__[-1]
