"""WSGI applications (Flask, Django, ...) served as tether services.

`pip install 'tether[wsgi]'`. [`Server`][tether.ext.wsgi.Server] serves a WSGI application
through [a2wsgi](https://github.com/abersheeran/a2wsgi)'s WSGI-to-ASGI adapter under
[`tether.ext.asgi.Server`][tether.ext.asgi.Server] (uvicorn): each request runs in a
thread of the server's own pool, and everything else is the ASGI integration's: the
drain (readiness 503 and `Connection: close` from the [`DRAIN`][tether.health.DRAIN]
stage on), in-flight requests finishing before the server's `stop` returns, the
services it uses stopping after it. It was chosen over a WSGI server in a blocking
service by measurement; the frameworks page gives the figures. Handlers get
components by type with [`get`][tether.ext.wsgi.get]:

```python
from flask import Flask, request
from tether.ext.wsgi import Server, get

app = Flask(__name__)

@app.get("/count")
def count():
    return {"notes": get(request, Database).count()}   # the running Database

container = tether.Container()
tether.run(Server(app, port=8000, container=container, uses=[Database]), container=container)
```
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import tether
from tether.ext._common import running
from tether.ext._extra import needs
from tether.health import Health

with needs(__name__, "wsgi", "a2wsgi", "uvicorn"):
    from a2wsgi import WSGIMiddleware

    from tether.ext import asgi

__all__ = ["Server", "get"]

T = TypeVar("T")

WSGIApp = Callable[[Any, Any], Iterable[bytes]]
"""A WSGI application: called with the environ and `start_response`."""

logger = logging.getLogger("tether.ext.wsgi")

_CONTAINER_KEY = "tether.container"
_DEFAULT_THREADS = 10


class Server(asgi.Server):
    """A WSGI application (Flask, Django, ...) served by uvicorn as a service.

    The application runs in `threads` worker threads of the server's own (default
    10: the number of requests handled at once; a request beyond them waits for a
    thread). The pool is made in `start` and shut down in `stop`, after the last
    request, so no thread outlives the service, and the service can be started again.

    Everything else is [`tether.ext.asgi.Server`][tether.ext.asgi.Server]'s, with the
    same parameters: `host`, `port` or `sock` (or the process's
    [`listeners`][tether.listeners]), `container` and `uses` (what handlers get with
    [`get`][tether.ext.wsgi.get], started before the server and stopped after it),
    `health` (`/livez`, `/readyz` and `/status` answered in front of the
    application), `drain_timeout` (how long in-flight requests get once the
    listening socket is closed), `options` for `uvicorn.Config` and `name`. WSGI
    has no lifespan: put what the application needs at startup in services it uses.

    A request still running in its thread when `drain_timeout` ends cannot be
    interrupted (Python threads cannot be cancelled): its client is answered 500 and the
    stop waits for the thread to return, within `graceful_shutdown_timeout`.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        threads: int = _DEFAULT_THREADS,
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
        owner = "tether.ext.wsgi.Server"
        if not callable(app):
            raise TypeError(
                f"{owner} serves a WSGI application (a callable taking environ and "
                f"start_response), got {app!r} ({type(app).__name__})."
            )
        count: object = threads
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{owner}: threads= must be an integer >= 1, got {threads!r}.")
        self.wsgi_app = app
        """The WSGI application served."""
        self.threads = threads
        self._bridge: WSGIMiddleware | None = None
        super().__init__(
            self._serve_wsgi,
            host=host,
            port=port,
            sock=sock,
            container=container,
            uses=uses,
            health=health,
            lifespan="off",
            drain_timeout=drain_timeout,
            options=options,
            name=name,
        )

    async def start(self) -> None:
        """Make the thread pool, then listen (as the ASGI server does)."""
        bridge = WSGIMiddleware(self._with_container, workers=self.threads)
        self._bridge = bridge
        try:
            await super().start()
        except BaseException:
            self._bridge = None
            await _shut_down(bridge)
            raise

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, then end the thread pool."""
        try:
            await super().stop()
        finally:
            bridge, self._bridge = self._bridge, None
            if bridge is not None:
                await _shut_down(bridge)

    async def _serve_wsgi(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        bridge = self._bridge
        if bridge is None:  # pragma: no cover - uvicorn serves only between start and stop
            raise tether.ServiceStateError(f"{tether.status(self).name} is not running.")
        call: Callable[..., Awaitable[None]] = bridge  # a2wsgi types the ASGI messages finely
        await call(scope, receive, send)

    def _with_container(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        if self.container is not None:
            environ[_CONTAINER_KEY] = self.container
        return self.wsgi_app(environ, start_response)


async def _shut_down(bridge: WSGIMiddleware) -> None:
    """End the pool's threads; a request still running in one is waited for."""
    await asyncio.to_thread(bridge.executor.shutdown, wait=True)


def _environ(request: object) -> Mapping[str, Any]:
    if isinstance(request, Mapping):
        return request
    for attribute in ("environ", "META"):  # Flask/Werkzeug, Django
        found = getattr(request, attribute, None)
        if isinstance(found, Mapping):
            return found
    raise TypeError(
        f"tether.ext.wsgi.get() takes a request (Flask's or Werkzeug's, Django's) or a "
        f"WSGI environ, got {request!r} ({type(request).__name__})."
    )


def get(request: object, key: type[T], name: str | None = None) -> T:
    """The component of type `key` (and `name`) from the server's container.

    `request` is Flask's `request` (or any Werkzeug request), a Django request, or
    the WSGI environ itself. For the services listed in `uses` (or injected into
    the server), this is the running instance of the graph. Sync providers only: the
    handler runs in a thread, not in the event loop. Raises
    [`InjectionError`][tether.InjectionError] if the application is not served with a
    container, and [`ServiceStateError`][tether.ServiceStateError] if the component is
    a service that is not running.
    """
    environ = _environ(request)
    container = environ.get(_CONTAINER_KEY)
    if not isinstance(container, tether.Container):
        raise tether.InjectionError(
            "No tether container in the WSGI environ of this request: serve the "
            "application with tether.ext.wsgi.Server(app, container=container, uses=[...])."
        )
    return running(container.get(key, name), key, "a handler")
