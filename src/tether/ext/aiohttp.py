"""aiohttp applications served as tether services (`pip install 'tether[aiohttp]'`).

[`Server`][tether.ext.aiohttp.Server] runs a `web.Application` through aiohttp's `AppRunner` and a
site (host and port, or a socket bound by someone else) as a [`Service`][tether.Service]: it
starts after what it uses, stops before it, and stops gracefully. Handlers get
components by type with [`get`][tether.ext.aiohttp.get] (or [`aget`][tether.ext.aiohttp.aget]) from
the container given to the server:

```python
from aiohttp import web
from tether.ext.aiohttp import Server, get

async def count(request: web.Request) -> web.Response:
    db = get(request, Database)            # the running Database of the graph
    return web.json_response({"notes": await db.count()})

app = web.Application()
app.router.add_get("/count", count)
container = tether.Container()
tether.run(Server(app, port=8080, container=container, uses=[Database]), container=container)
```
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import tether
from tether._prefork._sockets import backlog_of
from tether._process._listen import DEFAULT_HOST, check_address, check_seconds, completed
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

with needs(__name__, "aiohttp", "aiohttp"):
    from aiohttp import web

__all__ = ["Server", "aget", "get"]

T = TypeVar("T")

logger = logging.getLogger("tether.ext.aiohttp")

_CONTAINER = web.AppKey("tether.container", tether.Container)
_DEFAULT_PORT = 8080
_BACKLOG = 128
"""aiohttp's own default, for a socket whose backlog cannot be read."""


class Server(tether.Service):
    """An aiohttp application served as a service, stopped gracefully.

    Where it listens: `host` and `port` (default `127.0.0.1:8080`; `port=0`
    picks a free port, see `port`), or `sock`, a bound socket handed over by
    someone else (a pre-fork master, systemd): the server listens on a duplicate and
    closes only that, so the socket stays yours. Given none of them, it serves on
    [`listeners`][tether.listeners] when the process was handed sockets (a pre-fork worker,
    systemd socket activation), else on the default address.

    What it needs: `uses` lists the types its handlers get with [`get`][tether.ext.aiohttp.get];
    they are resolved through `container` when the server is created and become its
    dependencies, so they start before it and stop after it. A subclass built by the
    container (`container.root(Api)`) gets the services injected into its
    `__init__` as dependencies too. `health` mounts [`Health`][tether.health.Health]'s
    `/livez`, `/readyz` and `/status` into the application and makes it a
    dependency.

    How it stops: from the [`DRAIN`][tether.health.DRAIN] stage on, every response carries
    `Connection: close`, so keep-alive clients reconnect (elsewhere, once readiness
    has taken this instance out); then the `stop` hook closes the listening socket,
    closes idle connections, lets in-flight requests finish for up to
    `drain_timeout` seconds (then cancels them) and runs the application's
    `on_shutdown` and `on_cleanup`. The application's `on_startup` and
    `cleanup_ctx` run in `start`, once everything it uses is running.

    `options` go to `web.AppRunner` (`access_log_format`, `keepalive_timeout`,
    `access_log=None` to silence the access log, ...); `name` names the service in
    logs (`Server[api]`). The application is modified when the server is created
    (the container, the health routes and a response hook are added), so create the
    server before the application starts.
    """

    def __init__(
        self,
        app: web.Application,
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
        owner = "tether.ext.aiohttp.Server"
        if not isinstance(app, web.Application):
            raise TypeError(
                f"{owner} serves a web.Application, got {app!r} ({type(app).__name__})."
            )
        if app.frozen:
            raise tether.ServiceStateError(
                f"{owner}: the application has already started (it is frozen); create "
                f"the Server before the application runs, with a fresh web.Application."
            )
        check_address(owner, host, port, sock)
        check_health(owner, health)
        self.app = app
        self.container = container
        self.drain_timeout = check_seconds(owner, "drain_timeout", drain_timeout)
        self.options = dict(options or {})
        if name is not None:
            self.name = name
        self._host = host or DEFAULT_HOST
        self._port = _DEFAULT_PORT if port is None else port
        self._sock = sock
        self._inherit = host is None and port is None and sock is None
        self._health = health
        self._uses = resolve_uses(owner, container, uses)
        self._runner: web.AppRunner | None = None
        self._draining = False
        if container is not None:
            app[_CONTAINER] = container
        app.on_response_prepare.append(self._on_response_prepare)
        if health is not None:
            _mount_health(app, health)

    @property
    def dependencies(self) -> list[list[tether.ServiceBase]]:
        """What `uses` resolved to, and the mounted health service: started together."""
        return started_with(self._uses, self._health)

    @property
    def graceful_shutdown_timeout(self) -> float:
        """Room for in-flight requests (twice `drain_timeout`: wait, then cancel) and hooks."""
        return 2 * self.drain_timeout + 5

    async def start(self) -> None:
        """Run the application's startup hooks, then listen."""
        self._draining = False
        runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=self.drain_timeout, **self.options
        )
        given = [self._sock] if self._sock is not None else []
        if self._inherit:
            given = tether.listeners()
        duplicates = [sock.dup() for sock in given]
        try:
            await runner.setup()
            # aiohttp listens again on the socket it is given (128 by default): keep
            # the backlog the socket was bound with, it is shared with other workers.
            sites: list[web.BaseSite] = [
                web.SockSite(runner, dup, backlog=backlog_of(dup) or _BACKLOG) for dup in duplicates
            ]
            if not sites:
                sites.append(web.TCPSite(runner, self._host, self._port))
            for site in sites:
                # Not cancellable half-way: a site lost while binding would leak its socket.
                await completed(site.start())
        except BaseException:
            await runner.cleanup()
            for duplicate in duplicates:
                duplicate.close()
            raise
        self._runner = runner
        logger.info("%s serving on %s", tether.status(self).name, self.url)

    @DRAIN
    def drain(self) -> None:
        """The stop begins (the drain stage): answer with `Connection: close` from now on."""
        self._draining = True

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, run the shutdown hooks."""
        self._draining = True
        runner, self._runner = self._runner, None
        if runner is not None:
            for site in list(runner.sites):
                # aiohttp's site.stop() closes the asyncio server at once; stop_serving
                # first takes what waits in a refusing socket's queue, and loses no
                # connection accepted in the same loop iteration.
                listening = getattr(site, "_server", None)
                if listening is not None:
                    await tether.stop_serving(listening, drain_timeout=self.drain_timeout)
                await site.stop()
            server = runner.server
            if server is not None:
                # aiohttp closes idle connections on cleanup: one accepted just before
                # the socket closed gets time to deliver its first request.
                await until_first_requests(
                    lambda: server.connections,
                    _fresh,
                    min(FIRST_REQUEST_GRACE, self.drain_timeout),
                )
            await runner.cleanup()

    async def _on_response_prepare(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        del request
        if self._draining:
            # Both: the header tells the client, force_close makes aiohttp close after it.
            response.force_close()
            response.headers["Connection"] = "close"

    @property
    def port(self) -> int | None:
        """The port it listens on while running (useful with `port=0`), else None."""
        address = self._address()
        return address[1] if isinstance(address, tuple) else None

    @property
    def url(self) -> str | None:
        """`http://host:port` it listens on while running, else None."""
        address = self._address()
        if address is None:
            return None
        if isinstance(address, tuple):
            host = f"[{address[0]}]" if len(address) == 4 else address[0]
            return f"http://{host}:{address[1]}"
        return f"unix:{address.decode() if isinstance(address, bytes) else address}"

    def _address(self) -> Any:
        runner = self._runner
        addresses = runner.addresses if runner is not None else []
        return addresses[0] if addresses else None


def _fresh(handler: Any) -> bool:
    """An aiohttp connection that has read no request yet, and is still open."""
    transport = getattr(handler, "transport", None)
    open_ = transport is not None and not transport.is_closing()
    return open_ and getattr(handler, "_request_count", 1) == 0


def _mount_health(app: web.Application, health: Health) -> None:
    async def endpoint(request: web.Request) -> web.Response:
        reply = health._respond(request.method, request.path)
        assert reply is not None
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers())

    for path in health.paths:
        app.router.add_route("*", path, endpoint)


def _container(request: web.Request) -> tether.Container:
    found = request.config_dict.get(_CONTAINER)
    if found is None:
        raise tether.InjectionError(
            f"No tether container is bound to the application serving {request.path}: "
            f"create its server with tether.ext.aiohttp.Server(app, container=container, "
            f"uses=[...])."
        )
    return found


def get(request: web.Request, key: type[T], name: str | None = None) -> T:
    """The component of type `key` (and `name`) from the server's container.

    For the services listed in `uses` (or injected into the server), this is the
    running instance of the graph. Resolving works as `container.get`: sync
    providers only (see [`aget`][tether.ext.aiohttp.aget]). Raises
    [`InjectionError`][tether.InjectionError] if the server was created without a container, and
    [`ServiceStateError`][tether.ServiceStateError] if the component is a service that is not
    running (it was not part of the server's graph).
    """
    return running(_container(request).get(key, name), key, f"the handler of {request.path}")


async def aget(request: web.Request, key: type[T], name: str | None = None) -> T:
    """Like `get`, awaiting async factories on the way (`container.aget`)."""
    return running(await _container(request).aget(key, name), key, f"the handler of {request.path}")
