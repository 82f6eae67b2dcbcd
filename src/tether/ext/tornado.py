"""Tornado applications served by Tornado's own `HTTPServer`, as tether services.

`pip install 'tether[tornado]'`. Tornado runs on the asyncio event loop (since Tornado
5), so its server needs no bridge: [`Server`][tether.ext.tornado.Server] starts a
`tornado.httpserver.HTTPServer` on the graph's loop once what it uses is running, and
stops it gracefully, before those services stop, with the drain and readiness of the
other servers of `tether.ext`. Handlers get components by type with
[`get`][tether.ext.tornado.get]:

```python
import tornado.web
from tether.ext.tornado import Server, get

class Count(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write({"notes": await get(self, Database).count()})

app = tornado.web.Application([(r"/count", Count)])
container = tether.Container()
tether.run(Server(app, port=8000, container=container, uses=[Database]), container=container)
```
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

import tether
from tether._process._listen import DEFAULT_HOST, bind, check_address, check_seconds, url_of
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

with needs(__name__, "tornado", "tornado"):
    from tornado import httputil
    from tornado.httpserver import HTTPServer
    from tornado.iostream import IOStream

__all__ = ["Server", "get"]

T = TypeVar("T")

logger = logging.getLogger("tether.ext.tornado")

_DEFAULT_PORT = 8000
_POLL = 0.005
_RESERVED = frozenset({"request_callback"})


class Server(tether.Service):
    """A Tornado application served by Tornado's `HTTPServer` as a service.

    `app` is what `HTTPServer` serves: a `tornado.web.Application`, or any
    `HTTPServerConnectionDelegate` or request callback. Where it listens, what it
    uses and its health endpoints are as for the other servers of `tether.ext`:
    `host` and `port` (default `127.0.0.1:8000`; `port=0` picks a free port, see
    `port`) or `sock` (a bound socket someone else owns; the server listens on a
    duplicate), else the process's [`listeners`][tether.listeners] when it was handed
    sockets; `uses` (types resolved through `container`, started before the server,
    stopped after it; handlers get them with [`get`][tether.ext.tornado.get]);
    `health` ([`Health`][tether.health.Health]'s endpoints answered in front of the
    application, and a dependency). `options` go to `HTTPServer` (`xheaders`,
    `max_body_size`, `idle_connection_timeout`, ...).

    How it stops: from the [`DRAIN`][tether.health.DRAIN] stage on, every response
    carries `Connection: close` and the connection closes once it is sent; then the
    `stop` hook stops listening, gives a connection accepted just before that time to
    send its first request, waits up to `drain_timeout` seconds for the requests in
    flight to be answered, and closes the connections left (Tornado's
    `close_all_connections`).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        container: tether.Container | None = None,
        uses: Iterable[Any] = (),
        health: Health | None = None,
        drain_timeout: float = 10.0,
        options: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        owner = "tether.ext.tornado.Server"
        if not callable(app) and not isinstance(app, httputil.HTTPServerConnectionDelegate):
            raise TypeError(
                f"{owner} serves a tornado.web.Application (or another "
                f"HTTPServerConnectionDelegate, or a request callback), got {app!r} "
                f"({type(app).__name__})."
            )
        check_address(owner, host, port, sock)
        check_health(owner, health)
        self.options = dict(options or {})
        reserved = sorted(_RESERVED & self.options.keys())
        if reserved:
            raise ValueError(f"{owner}: options= cannot set {', '.join(reserved)}; pass app.")
        self.app = app
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
        self._server: _TrackingServer | None = None
        self._sockets: list[socket.socket] = []
        self.draining = False

    @property
    def dependencies(self) -> list[list[tether.ServiceBase]]:
        """What `uses` resolved to, and the mounted health service: started together."""
        return started_with(self._uses, self._health)

    @property
    def graceful_shutdown_timeout(self) -> float:
        """Room for in-flight requests (`drain_timeout`) and closing the connections."""
        return self.drain_timeout + 10

    async def start(self) -> None:
        """Listen: a Tornado `HTTPServer` on the running loop."""
        self.draining = False
        given = [self._sock] if self._sock is not None else []
        if self._inherit:
            given = tether.listeners()
        sockets = [s.dup() for s in given] or bind(self._host, self._port)
        try:
            for sock in sockets:
                sock.setblocking(False)  # noqa: FBT003 - the socket API
            server = _TrackingServer(self.app, owner=self, **self.options)
            server.add_sockets(sockets)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._server, self._sockets = server, sockets
        logger.info("%s serving on %s", tether.status(self).name, self.url)

    @DRAIN
    def drain(self) -> None:
        """The stop begins (the drain stage): answer with `Connection: close` from now on."""
        self.draining = True

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, close the connections."""
        self.draining = True
        server, self._server = self._server, None
        self._sockets = []
        if server is None:
            return
        server.stop()  # closes its listening sockets (ours: duplicates, or bound here)
        await until_first_requests(
            lambda: list(server.tracked),
            server.fresh,
            min(FIRST_REQUEST_GRACE, self.drain_timeout),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        # Polled: whether a stream still writes is Tornado's state, with no event for it.
        while server.busy() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_POLL)
        if server.busy():
            logger.warning(
                "%s: requests still in flight after drain_timeout=%gs are cut off",
                tether.status(self).name,
                self.drain_timeout,
            )
        await server.close_all_connections()

    @property
    def port(self) -> int | None:
        """The port it listens on while running (useful with `port=0`), else None."""
        if not self._sockets or self._server is None:
            return None
        address = self._sockets[0].getsockname()
        return address[1] if isinstance(address, tuple) else None

    @property
    def url(self) -> str | None:
        """`http://host:port` it listens on while running, else None."""
        if not self._sockets or self._server is None:
            return None
        return url_of(self._sockets[0])


class _Connection:
    """What the server knows of one connection: requests begun and answered."""

    __slots__ = ("answered", "begun", "stream")

    def __init__(self, stream: IOStream) -> None:
        self.stream = stream
        self.begun = 0
        self.answered = 0


class _TrackingServer(HTTPServer):
    """Tornado's server, keeping count of each connection's requests in flight."""

    def initialize(self, request_callback: Any, owner: Server, **options: Any) -> None:  # type: ignore[override]
        super().initialize(request_callback, **options)
        self.owner = owner
        self.tracked: dict[object, _Connection] = {}

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        before = set(self._connections)
        super().handle_stream(stream, address)
        for conn in set(self._connections) - before:
            self.tracked[conn] = _Connection(stream)

    def on_close(self, server_conn: object) -> None:
        self.tracked.pop(server_conn, None)
        super().on_close(server_conn)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        tracked = self.tracked.get(server_conn)
        proxy = _ConnectionProxy(request_conn, self.owner, tracked)
        delegate = super().start_request(server_conn, proxy)  # type: ignore[arg-type]
        return _Delegate(delegate, proxy, self.owner, tracked)

    def fresh(self, conn: object) -> bool:
        """Accepted, open, and no request begun on it yet."""
        tracked = self.tracked.get(conn)
        return tracked is not None and tracked.begun == 0 and not tracked.stream.closed()

    def busy(self) -> bool:
        """Whether a request is in flight or a response is still being written."""
        return any(
            conn.begun > conn.answered or (not conn.stream.closed() and conn.stream.writing())
            for conn in self.tracked.values()
        )


class _ConnectionProxy:
    """The request's connection, as the application sees it.

    The real one, plus `Connection: close` on responses begun during the drain, and a
    count of answers.
    """

    def __init__(
        self, real: httputil.HTTPConnection, owner: Server, tracked: _Connection | None
    ) -> None:
        self._real = real
        self._owner = owner
        self._tracked = tracked
        self._finished = False
        self.tether_container = owner.container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def write_headers(
        self,
        start_line: httputil.ResponseStartLine | httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Awaitable[None]:
        if self._owner.draining:
            headers["Connection"] = "close"
            # Tornado's own flag for a response to a `Connection: close` request: the
            # connection closes once the response is flushed.
            if hasattr(self._real, "_disconnect_on_finish"):
                self._real._disconnect_on_finish = True
        return self._real.write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Awaitable[None]:
        return self._real.write(chunk)

    def finish(self) -> None:
        try:
            self._real.finish()
        finally:
            self.answered()

    def answered(self) -> None:
        if not self._finished:
            self._finished = True
            if self._tracked is not None:
                self._tracked.answered += 1


class _Delegate(httputil.HTTPMessageDelegate):
    """Counts the request as begun, and answers the health endpoints itself."""

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        proxy: _ConnectionProxy,
        owner: Server,
        tracked: _Connection | None,
    ) -> None:
        self.delegate = delegate
        self.proxy = proxy
        self.owner = owner
        self.tracked = tracked
        self.health_reply = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        if self.tracked is not None:
            self.tracked.begun += 1
        health = self.owner._health
        if health is not None and isinstance(start_line, httputil.RequestStartLine):
            reply = health._respond(start_line.method, start_line.path.split("?", 1)[0])
            if reply is not None:
                self.health_reply = True
                answer = httputil.HTTPHeaders(dict(reply.headers()))
                answer["Content-Length"] = str(len(reply.body))
                status = httputil.ResponseStartLine("HTTP/1.1", reply.status, "")
                body = b"" if start_line.method == "HEAD" else reply.body
                self.proxy.write_headers(status, answer, body)
                self.proxy.finish()
                return None
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.health_reply:
            return None
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        if not self.health_reply:
            self.delegate.finish()

    def on_connection_close(self) -> None:
        self.proxy.answered()  # it will not be answered
        if not self.health_reply:
            self.delegate.on_connection_close()


def get(handler: object, key: type[T], name: str | None = None) -> T:
    """The component of type `key` (and `name`) from the server's container.

    `handler` is a `tornado.web.RequestHandler` (or its `request`). For the services
    listed in `uses` (or injected into the server), this is the running instance of
    the graph. Raises [`InjectionError`][tether.InjectionError] if the application is
    not served with a container, and [`ServiceStateError`][tether.ServiceStateError]
    if the component is a service that is not running.
    """
    request = getattr(handler, "request", handler)
    connection = getattr(request, "connection", None)
    container = getattr(connection, "tether_container", None)
    if not isinstance(container, tether.Container):
        raise tether.InjectionError(
            f"No tether container reaches {handler!r}: serve the application with "
            f"tether.ext.tornado.Server(app, container=container, uses=[...]) and pass a "
            f"RequestHandler or its request."
        )
    return running(container.get(key, name), key, "a handler")
