"""ASGI applications (Starlette, FastAPI, ...) served by uvicorn as tether services.

`pip install 'tether[asgi]'`. [`Server`][tether.ext.asgi.Server] runs an ASGI application with
uvicorn as a [`Service`][tether.Service]: it starts after what it uses, stops before it, and stops
gracefully. The tether graph owns startup and shutdown; the application's own
lifespan (Starlette's and FastAPI's `lifespan=`) runs inside the server's `start`,
once everything the server depends on is running, and its shutdown half runs in the
server's `stop`, after the last request and before those services stop. Handlers
get components by type with [`get`][tether.ext.asgi.get]:

```python
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from tether.ext.asgi import Server, get

async def count(request):
    db = get(request, Database)            # the running Database of the graph
    return JSONResponse({"notes": await db.count()})

app = Starlette(routes=[Route("/count", count)])
container = tether.Container()
tether.run(Server(app, port=8000, container=container, uses=[Database]), container=container)
```
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Literal, TypeVar

import tether
from tether._prefork._sockets import backlog_of
from tether._process._listen import (
    DEFAULT_HOST,
    bind,
    check_address,
    check_seconds,
    completed,
    url_of,
)
from tether.ext._common import (
    FIRST_REQUEST_GRACE,
    check_health,
    resolve_uses,
    running,
    started_with,
    until_first_requests,
)
from tether.ext._extra import needs
from tether.health import DRAIN, Health

with needs(__name__, "asgi", "uvicorn"):
    import uvicorn

__all__ = ["LifespanError", "Server", "aget", "get"]

T = TypeVar("T")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LifespanMode = Literal["auto", "on", "off"]

logger = logging.getLogger("tether.ext.asgi")

_CONTAINER_KEY = "tether.container"
_DEFAULT_PORT = 8000
_RESERVED = frozenset(
    {
        "app",
        "fd",
        "host",
        "interface",
        "lifespan",
        "log_config",
        "port",
        "timeout_graceful_shutdown",
        "uds",
    }
)
_LIFESPAN_MODES = ("auto", "on", "off")
_APP_EXIT_GRACE = 5.0
"""Seconds the application gets to return after answering a lifespan event."""


class LifespanError(tether.TetherError):
    """The application's ASGI lifespan failed without raising an exception of its own.

    For example it answered `lifespan.startup.failed` with a message, or (with
    `lifespan="on"`) ended the protocol before startup completed. An exception raised
    by the application's lifespan code propagates itself, with a note, instead.
    """


class Server(tether.Service):
    """An ASGI application served by uvicorn as a service, stopped gracefully.

    Where it listens: `host` and `port` (default `127.0.0.1:8000`; `port=0`
    picks a free port, see `port`), or `sock`, a bound socket handed over by
    someone else (a pre-fork master, systemd): the server listens on a duplicate and
    closes only that, so the socket stays yours. Given none of them, it serves on
    [`listeners`][tether.listeners] when the process was handed sockets (a pre-fork worker,
    systemd socket activation), else on the default address.

    What it needs: `uses` lists the types its handlers get with [`get`][tether.ext.asgi.get]; they
    are resolved through `container` when the server is created and become its
    dependencies. A subclass built by the container gets the services injected into
    its `__init__` as dependencies too. `health` answers
    [`Health`][tether.health.Health]'s `/livez`, `/readyz` and `/status` in front of
    the application and makes it a dependency.

    The lifespan (`lifespan="auto"`, the default, runs it when the application
    supports it; `"on"` requires it; `"off"` skips it): startup runs in `start`
    after every dependency is running and before the socket accepts a connection; a
    failure there fails the start with the application's own exception, and what had
    started is stopped. Shutdown runs in `stop` once no request is in flight,
    before the dependencies stop. The lifespan state (what a Starlette lifespan
    yields) reaches every request's `scope["state"]`, and so does the container.
    Nothing starts twice: services the lifespan enters with `async with` or
    `container.started(...)` are the graph's own, already running, shared.

    How it stops: from the [`DRAIN`][tether.health.DRAIN] stage on, every response
    carries `Connection: close`; then the `stop` hook closes the listening socket,
    closes idle connections, waits up to `drain_timeout` seconds for in-flight
    requests (then cancels them), and runs the lifespan shutdown.

    `options` go to `uvicorn.Config` (`http="httptools"`, `proxy_headers`,
    `timeout_keep_alive`, `access_log=False`, ...; not `host`, `port` or
    `lifespan`, which are the server's own). uvicorn's logging is left to yours
    (`log_config` is not applied); it installs no signal handler. `name` names the
    service in logs.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        container: tether.Container | None = None,
        uses: Iterable[Any] = (),
        health: Health | None = None,
        lifespan: LifespanMode = "auto",
        drain_timeout: float = 10.0,
        options: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        owner = "tether.ext.asgi.Server"
        if not callable(app):
            raise TypeError(
                f"{owner} serves an ASGI application, got {app!r} ({type(app).__name__})."
            )
        check_address(owner, host, port, sock)
        check_health(owner, health)
        if lifespan not in _LIFESPAN_MODES:
            raise ValueError(
                f"{owner}: lifespan= must be one of {', '.join(map(repr, _LIFESPAN_MODES))}, "
                f"got {lifespan!r}."
            )
        self.options = dict(options or {})
        reserved = sorted(_RESERVED & self.options.keys())
        if reserved:
            raise ValueError(
                f"{owner}: options= cannot set {', '.join(reserved)}; those are the "
                f"server's own parameters (host=, port=, sock=, lifespan=, drain_timeout=)."
            )
        try:
            uvicorn.Config(app, lifespan="off", log_config=None, **self.options)
        except TypeError as exc:
            raise TypeError(
                f"{owner}: options= holds what uvicorn.Config does not take: {exc}"
            ) from None
        self.app = app
        self.lifespan = lifespan
        self.drain_timeout = check_seconds(owner, "drain_timeout", drain_timeout)
        if name is not None:
            self.name = name
        self.container = container
        self._host = host or DEFAULT_HOST
        self._port = _DEFAULT_PORT if port is None else port
        self._sock = sock
        self._inherit = host is None and port is None and sock is None
        self._health = health
        self._uses = resolve_uses(owner, container, uses)
        self._server: uvicorn.Server | None = None
        self._lifespan: _Lifespan | None = None
        self._sockets: list[socket.socket] = []
        self._draining = False
        self._stopping = False

    @property
    def dependencies(self) -> list[list[tether.ServiceBase]]:
        """What `uses` resolved to, and the mounted health service: started together."""
        return started_with(self._uses, self._health)

    @property
    def graceful_shutdown_timeout(self) -> float:
        """Room for in-flight requests (`drain_timeout`) and the lifespan shutdown."""
        return self.drain_timeout + 10

    async def start(self) -> None:
        """Run the application's lifespan startup, then listen."""
        self._draining = False
        self._stopping = False
        state: dict[str, Any] = {}
        if self.container is not None:
            state[_CONTAINER_KEY] = self.container
        config = uvicorn.Config(
            self._asgi,
            lifespan="off",
            interface="asgi3",
            log_config=None,
            timeout_graceful_shutdown=math.ceil(self.drain_timeout),  # uvicorn takes whole seconds
            **self._backlog_option(),
            **self.options,
        )
        config.load()
        label = tether.status(self).name
        lifespan = _Lifespan(config.loaded_app, state, self.lifespan, label)
        await lifespan.startup()
        server = uvicorn.Server(config)
        server.lifespan = _SharedState(state)
        sockets: list[socket.socket] = []
        try:
            given = [self._sock] if self._sock is not None else []
            if self._inherit:
                given = tether.listeners()
            sockets = [s.dup() for s in given] or bind(self._host, self._port)
            # Not cancellable half-way: a server lost while binding would leak its socket.
            await completed(server.startup(sockets=sockets))
        except BaseException as exc:
            for listening in getattr(server, "servers", ()):
                listening.close()
            for sock in sockets:
                sock.close()
            try:
                await lifespan.shutdown()
            except Exception as error:
                exc.add_note(f"tether: the lifespan shutdown after it also raised {error!r}")
            raise
        self._server, self._lifespan, self._sockets = server, lifespan, sockets
        self.add_task(self._tick(server), name=f"{label}.uvicorn")
        logger.info("%s serving on %s", label, self.url)

    def _backlog_option(self) -> dict[str, Any]:
        """The backlog uvicorn listens with on a given socket: the socket's own."""
        if "backlog" in self.options:
            return {}
        given = [self._sock] if self._sock is not None else []
        if self._inherit:
            given = tether.listeners()
        found = [backlog for sock in given if (backlog := backlog_of(sock)) is not None]
        return {"backlog": max(found)} if found else {}

    async def _tick(self, server: uvicorn.Server) -> None:
        # uvicorn's own loop: refreshes the Date header every second and ends on
        # should_exit or once limit_max_requests is reached.
        await server.main_loop()
        if not self._stopping:
            logger.info("%s: uvicorn asked to exit; stopping", tether.status(self).name)
            self.request_stop()

    @DRAIN
    def drain(self) -> None:
        """The stop begins (the drain stage): answer with `Connection: close` from now on."""
        self._draining = True

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, run the lifespan shutdown."""
        self._draining = True
        self._stopping = True
        server, self._server = self._server, None
        lifespan, self._lifespan = self._lifespan, None
        sockets, self._sockets = self._sockets, []
        try:
            if server is not None:
                for listening in getattr(server, "servers", ()):
                    # Takes what waits in a refusing socket's queue, and loses no
                    # connection accepted in the same loop iteration (see stop_serving).
                    await tether.stop_serving(listening, drain_timeout=self.drain_timeout)
                server.should_exit = True
                # uvicorn closes idle connections on shutdown: one accepted just
                # before the socket closed gets time to deliver its first request.
                state = server.server_state
                await until_first_requests(
                    lambda: state.connections,
                    _fresh,
                    min(FIRST_REQUEST_GRACE, self.drain_timeout),
                )
                await server.shutdown()
        finally:
            for sock in sockets:
                sock.close()
        if lifespan is not None:
            await lifespan.shutdown()

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            health = self._health
            if health is not None:
                reply = health._respond(scope["method"], scope["path"])
                if reply is not None:
                    headers = [(k.lower().encode(), v.encode()) for k, v in reply.headers()]
                    headers.append((b"content-length", str(len(reply.body)).encode()))
                    await send(
                        {"type": "http.response.start", "status": reply.status, "headers": headers}
                    )
                    await send({"type": "http.response.body", "body": reply.body})
                    return
            send = self._closing(send)
        await self.app(scope, receive, send)

    def _closing(self, send: Send) -> Send:
        """`send` that adds `Connection: close` to a response head sent while draining."""

        async def closing(message: Message) -> None:
            if self._draining and message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        return closing

    @property
    def port(self) -> int | None:
        """The port it listens on while running (useful with `port=0`), else None."""
        listening = self._listening()
        if listening is None:
            return None
        address = listening.getsockname()
        return address[1] if isinstance(address, tuple) else None

    @property
    def url(self) -> str | None:
        """`http://host:port` it listens on while running, else None."""
        listening = self._listening()
        return None if listening is None else url_of(listening)

    def _listening(self) -> Any:
        """The first socket the running server listens on, as its event loop holds it.

        Not the socket handed to uvicorn: a loop may take that one over (rloop's
        `create_server` detaches it, leaving the Python object closed).
        """
        for server in getattr(self._server, "servers", None) or ():
            for sock in server.sockets:
                return sock
        return None


def _fresh(protocol: Any) -> bool:
    """A uvicorn connection that has read no request yet (no cycle), and is still open."""
    transport = getattr(protocol, "transport", None)
    open_ = transport is not None and not transport.is_closing()
    return open_ and getattr(protocol, "cycle", True) is None


class _SharedState:
    """What uvicorn reads of its lifespan object: the state copied into each request.

    The lifespan itself is run by `_Lifespan`, so that a failing startup raises
    the application's own exception in `start` rather than exiting the process.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.should_exit = False

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class _Lifespan:
    """The ASGI lifespan protocol, run beside the graph: startup, then shutdown."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], mode: LifespanMode, label: str) -> None:
        self.app = app
        self.state = state
        self.mode = mode
        self.label = label
        self.task: asyncio.Task[None] | None = None
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.started: asyncio.Future[Message] | None = None
        self.stopped: asyncio.Future[Message] | None = None

    async def _run(self) -> None:
        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        await self.app(scope, self.incoming.get, self._send)

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            future = self.started
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            future = self.stopped
        else:
            raise LifespanError(f"{self.label}: unexpected ASGI lifespan message {message!r}.")
        if future is None or future.done():
            raise LifespanError(f"{self.label}: the application sent {kind!r} out of turn.")
        future.set_result(message)

    async def startup(self) -> None:
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self.started = loop.create_future()
        self.stopped = loop.create_future()
        self.task = task = loop.create_task(self._run(), name=f"{self.label} lifespan")
        self.incoming.put_nowait({"type": "lifespan.startup"})
        await self._until(self.started, task)
        if self.started.done():
            message = self.started.result()
            if message["type"] == "lifespan.startup.complete":
                logger.debug("%s: application lifespan startup complete", self.label)
                return
            self.task = None
            await self._fail("startup", message, task)
        self.task = None
        error = task.exception() if not task.cancelled() else None
        if self.mode == "auto":
            logger.info(
                "%s: the application does not support the ASGI lifespan (%s); serving without it",
                self.label,
                "it returned" if error is None else f"{type(error).__name__}: {error}",
            )
            return
        raise LifespanError(
            f"{self.label}: the application ended the ASGI lifespan before its startup "
            f"completed (lifespan='on' requires it); use lifespan='auto' to serve an "
            f"application without one."
        ) from error

    async def shutdown(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        assert self.stopped is not None
        if not task.done():
            self.incoming.put_nowait({"type": "lifespan.shutdown"})
            await self._until(self.stopped, task)
        if self.stopped.done() and self.stopped.result()["type"] == "lifespan.shutdown.failed":
            await self._fail("shutdown", self.stopped.result(), task)
        error = await _finish(task, _APP_EXIT_GRACE)
        if error is not None:
            error.add_note(f"tether: raised by the ASGI lifespan shutdown of {self.label}")
            raise error
        logger.debug("%s: application lifespan shutdown complete", self.label)

    async def _until(self, future: asyncio.Future[Message], task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait((future, task), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _finish(task, 0)
            raise

    async def _fail(self, event: str, message: Message, task: asyncio.Task[None]) -> None:
        error = await _finish(task, _APP_EXIT_GRACE)
        if error is not None:
            error.add_note(f"tether: raised by the ASGI lifespan {event} of {self.label}")
            raise error
        text = message.get("message") or "no message given"
        raise LifespanError(f"{self.label}: the application's lifespan {event} failed: {text}")


async def _finish(task: asyncio.Task[None], grace: float) -> BaseException | None:
    """Let `task` end within `grace` seconds, else cancel it; return what it raised."""
    if not task.done():
        done, _ = await asyncio.wait((task,), timeout=grace)
        if not done:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            return None
    if task.cancelled():
        return None
    return task.exception()


def _container(connection: object) -> tether.Container:
    scope = connection if isinstance(connection, Mapping) else getattr(connection, "scope", None)
    state = scope.get("state") if isinstance(scope, Mapping) else None
    found = state.get(_CONTAINER_KEY) if isinstance(state, Mapping) else None
    if not isinstance(found, tether.Container):
        raise tether.InjectionError(
            f"No tether container in the ASGI scope of {connection!r}: serve the "
            f"application with tether.ext.asgi.Server(app, container=container, uses=[...]) "
            f"and pass a request, a websocket or a scope."
        )
    return found


def get(connection: object, key: type[T], name: str | None = None) -> T:
    """The component of type `key` (and `name`) from the server's container.

    `connection` is a request or websocket (anything with a `scope`, as in
    Starlette and FastAPI) or an ASGI scope. For the services listed in `uses` (or
    injected into the server), this is the running instance of the graph. Sync
    providers only (see [`aget`][tether.ext.asgi.aget]). Raises
    [`InjectionError`][tether.InjectionError] if the application is not served with a container, and
    [`ServiceStateError`][tether.ServiceStateError] if the component is a service that is not
    running. In FastAPI, wrap it in a dependency:

    ```python
    def database(request: Request) -> Database:
        return get(request, Database)

    @app.get("/count")
    async def count(db: Annotated[Database, Depends(database)]) -> dict[str, int]: ...
    ```
    """
    return running(_container(connection).get(key, name), key, "a handler")


async def aget(connection: object, key: type[T], name: str | None = None) -> T:
    """Like `get`, awaiting async factories on the way (`container.aget`)."""
    return running(await _container(connection).aget(key, name), key, "a handler")
