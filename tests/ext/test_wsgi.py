"""tether.ext.wsgi: real Flask and Django applications served on loopback."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

pytest.importorskip("a2wsgi")
pytest.importorskip("uvicorn")
pytest.importorskip("flask")
pytest.importorskip("django")
pytest.importorskip("aiohttp")  # the load test's client

import aiohttp
import django
import flask
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

import tether
from tests.conftest import bounded
from tests.httpclient import fetch
from tests.serving import ThreadGate, drain_under_load, indices_in_order
from tether.ext.wsgi import Server, get
from tether.health import Health


class Database(tether.Service):
    """A component the application uses; records its starts and stops."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def start(self) -> None:
        self.log.append("start:Database")

    async def stop(self) -> None:
        self.log.append("stop:Database")

    def rows(self) -> int:
        return 3


def _wsgi_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("WSGI")]


# ------------------------------------------------------------------ Flask


def flask_app(gate: ThreadGate | None = None) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/rows")
    def rows() -> dict[str, Any]:
        db = get(flask.request, Database)
        return {"rows": db.rows(), "running": db.running}

    @app.get("/work/<int:index>")
    def work(index: int) -> str:
        return str(index)

    @app.get("/slow")
    def slow() -> str:
        assert gate is not None
        return gate.hold()

    return app


async def test_flask_starts_after_what_it_uses_and_stops_before_it() -> None:
    """Database starts, the server serves Flask, the server stops, then the database."""
    container = tether.Container()
    server = Server(flask_app(), port=0, container=container, uses=[Database])
    db = container.get(Database)

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.service is server and event.kind is tether.EventKind.STATE:
            db.log.append(f"server {event.state}")

    with tether.subscribe(on_event):
        async with server:
            response = await fetch(f"{server.url}/rows")
            db.log.append(f"request answered {response.status}")
    assert response.json() == {"rows": 3, "running": True}
    assert db.log == [
        "start:Database",
        "server starting",
        "server running",
        "request answered 200",
        "server stopping",
        "server stopped",
        "stop:Database",
    ]


async def test_no_thread_is_left_and_the_server_starts_again() -> None:
    """The pool is made in start and ended in stop: a second run serves as the first."""
    server = Server(flask_app(), port=0, threads=2)
    for _ in range(2):
        async with server:
            assert (await fetch(f"{server.url}/work/7")).text == "7"
            assert _wsgi_threads()
        assert _wsgi_threads() == []


async def test_a_view_that_raises_is_answered_500_and_the_server_serves_on() -> None:
    """An exception in a view is the application's 500, not the server's end."""
    app = flask_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    server = Server(app, port=0)
    async with server:
        failed = await fetch(f"{server.url}/boom")
        after = await fetch(f"{server.url}/work/2")
        assert server.running
    assert (failed.status, after.status, after.text) == (500, 200, "2")


async def test_a_view_outliving_drain_timeout_is_answered_500_and_waited_for() -> None:
    """A view still running when drain_timeout ends: its client gets 500, and the stop
    waits for its thread to return before the services it uses stop."""
    gate = ThreadGate(1, asyncio.get_running_loop())
    container = tether.Container()
    server = Server(
        flask_app(gate), port=0, container=container, uses=[Database], drain_timeout=0.1
    )
    db = container.get(Database)
    await server.__aenter__()
    try:
        slow = asyncio.create_task(fetch(f"{server.url}/slow", seconds=10))
        await bounded(gate.all_in.wait())
        stopping = asyncio.create_task(server.__aexit__(None, None, None))
        answer = await bounded(slow)
        db.log.append(f"client got {answer.status}")
        assert not stopping.done()  # the view's thread still runs
        gate.release.set()
        await bounded(stopping)
    finally:
        gate.release.set()
        if server.running:
            await server.__aexit__(None, None, None)
    assert db.log == ["start:Database", "client got 500", "stop:Database"]
    assert gate.finished == 1
    assert _wsgi_threads() == []


async def test_health_answers_on_the_applications_port() -> None:
    """/livez and /readyz in front of Flask; other paths reach the application."""
    server = Server(flask_app(), port=0, health=Health(drain_delay=0))
    async with server:
        live = await fetch(f"{server.url}/livez")
        ready = await fetch(f"{server.url}/readyz")
        work = await fetch(f"{server.url}/work/1")
    assert (live.status, ready.status, work.text) == (200, 200, "1")


async def test_keep_alive_clients_get_connection_close_during_the_drain() -> None:
    """From the drain stage on, Flask's responses carry Connection: close."""
    health = Health(drain_delay=0.3)
    server = Server(flask_app(), port=0, health=health)
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


async def test_flask_drain_under_load_fails_no_request() -> None:
    """Hundreds of keep-alive requests across a stop, slow ones parked in their threads
    when the stop hook begins: every one answered, none failed."""
    gate = ThreadGate(5, asyncio.get_running_loop())
    server = Server(flask_app(gate), port=0, health=Health(drain_delay=0.3), name="flask")
    outcome = await drain_under_load(server, server, gate)
    assert outcome.failures == []
    assert len(outcome.fast) >= 200
    assert all(status == 200 for _, status, _, _ in outcome.fast)
    assert indices_in_order(outcome)
    assert outcome.in_flight_at_stop == 5
    assert [body for _, body, _ in outcome.slow] == ["slow done"] * 5
    assert _wsgi_threads() == []


# ----------------------------------------------------------------- Django


if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",  # noqa: S106 - no secret: the tests sign nothing
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        DATABASES={},
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - needs the settings

DJANGO_GATE: list[ThreadGate] = []


def django_rows(request: HttpRequest) -> JsonResponse:
    db = get(request, Database)
    return JsonResponse({"rows": db.rows(), "running": db.running})


def django_work(request: HttpRequest, index: int) -> HttpResponse:
    return HttpResponse(str(index), content_type="text/plain")


def django_slow(request: HttpRequest) -> HttpResponse:
    return HttpResponse(DJANGO_GATE[-1].hold(), content_type="text/plain")


urlpatterns = [
    path("rows", django_rows),
    path("work/<int:index>", django_work),
    path("slow", django_slow),
]


async def test_django_views_get_the_running_graphs_services() -> None:
    """A real Django application (settings, URLconf, views) behind the same server."""
    container = tether.Container()
    server = Server(get_wsgi_application(), port=0, container=container, uses=[Database])
    async with server, aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/rows") as response:
            answer = await response.json()
    assert answer == {"rows": 3, "running": True}
    assert container.get(Database).log == ["start:Database", "stop:Database"]


async def test_django_drain_under_load_fails_no_request() -> None:
    """The drain under load, with Django's views in the threads."""
    DJANGO_GATE.append(ThreadGate(5, asyncio.get_running_loop()))
    server = Server(get_wsgi_application(), port=0, health=Health(drain_delay=0.3))
    outcome = await drain_under_load(server, server, DJANGO_GATE[-1])
    assert outcome.failures == []
    assert len(outcome.fast) >= 200
    assert indices_in_order(outcome)
    assert [body for _, body, _ in outcome.slow] == ["slow done"] * 5


# ----------------------------------------------------------------- errors


def test_what_is_not_a_wsgi_app_or_a_thread_count_is_refused() -> None:
    """The constructor names the mistake."""
    with pytest.raises(TypeError, match="serves a WSGI application"):
        Server("app:app", port=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads= must be an integer >= 1, got 0"):
        Server(flask_app(), port=0, threads=0)
    with pytest.raises(ValueError, match="options= cannot set lifespan"):
        Server(flask_app(), port=0, options={"lifespan": "on"})


def test_get_names_what_it_takes_and_what_is_missing() -> None:
    """A request without the server's container, or something that is no request."""
    with pytest.raises(tether.InjectionError, match="No tether container in the WSGI environ"):
        get({"PATH_INFO": "/"}, Database)
    with pytest.raises(TypeError, match=r"takes a request \(Flask's or Werkzeug's, Django's\)"):
        get(42, Database)
