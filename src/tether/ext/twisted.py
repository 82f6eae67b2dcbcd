"""Twisted protocols in a tether graph, on Twisted's asyncio reactor.

`pip install 'tether[twisted]'`. Twisted's `AsyncioSelectorReactor` runs Twisted on an
asyncio event loop; here that loop is the graph's. Two services:

* [`Reactor`][tether.ext.twisted.Reactor] owns the reactor: it starts it on the running
  loop (and, by default, installs it as `twisted.internet.reactor`, so code that
  imports the reactor gets it), and stops it, running Twisted's shutdown triggers,
  without stopping the loop that tether owns;
* [`Listener`][tether.ext.twisted.Listener] listens with a Twisted protocol factory (a
  `twisted.web.server.Site`, a `Factory` of your protocol) once the reactor and what
  the protocol uses are running, and stops before them: it stops listening, lets
  connections finish, then closes them.

```python
from twisted.web import resource, server
from tether.ext.twisted import Listener, Reactor

class Hello(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        return b"hello"

reactor = Reactor()
tether.run(Listener(server.Site(Hello()), reactor=reactor, port=8000))
```
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

import tether
from tether._process._listen import DEFAULT_HOST, check_address, check_seconds
from tether.ext._common import FIRST_REQUEST_GRACE, until_first_requests
from tether.ext._extra import needs
from tether.health import DRAIN

with needs(__name__, "twisted", "twisted"):
    from twisted.internet import asyncioreactor, defer, interfaces
    from twisted.internet.main import installReactor
    from twisted.internet.posixbase import PosixReactorBase
    from twisted.protocols import policies
    from twisted.web import http

__all__ = ["Listener", "Reactor"]

logger = logging.getLogger("tether.ext.twisted")

_DEFAULT_PORT = 8000
_POLL = 0.005
_REACTOR_MODULE = "twisted.internet.reactor"


class _AsyncioReactor(asyncioreactor.AsyncioSelectorReactor):
    """Twisted's asyncio reactor, except that stopping it leaves the loop running.

    Twisted's own `crash` (run as the reactor shuts down) stops the asyncio loop,
    which is tether's, not the reactor's, to stop.
    """

    def crash(self) -> None:
        PosixReactorBase.crash(self)


class Reactor(tether.Service):
    """Twisted's asyncio reactor, running on the graph's event loop.

    `start` makes a reactor on the running loop and starts it (Twisted's `startup`
    triggers run); with `install` (the default) it becomes the process's
    `twisted.internet.reactor` first, replacing the one of an earlier run, or
    Twisted's default reactor when something imported `twisted.internet.reactor`
    before (making a `Site` does) and it never ran (logged: code that kept a
    reference to that one should look it up again). A reactor that runs or ran
    already is an error that says so; `install=False` leaves the process's reactor
    alone, and the Twisted code given this one (`reactor.reactor`) uses it.

    `stop` stops the reactor as Twisted does (its `before`, `during` and `after`
    shutdown triggers, Deferreds awaited), which disconnects what is still connected,
    and leaves the loop running. Make it a dependency of the services that use
    Twisted, as [`Listener`][tether.ext.twisted.Listener] does, so that it starts
    before them and stops after them.
    """

    def __init__(self, *, install: bool = True, name: str | None = None) -> None:
        self.install = install
        if name is not None:
            self.name = name
        self._reactor: _AsyncioReactor | None = None

    @property
    def reactor(self) -> Any:
        """The running reactor (an `AsyncioSelectorReactor`); an error while stopped."""
        if self._reactor is None:
            raise tether.ServiceStateError(
                f"{tether.status(self).name} is {tether.status(self).state.value}: the "
                f"reactor exists while the service runs."
            )
        return self._reactor

    async def start(self) -> None:
        """Make a reactor on the running loop, install it, start it."""
        reactor = _AsyncioReactor(asyncio.get_running_loop())
        try:
            if self.install:
                _install(reactor, tether.status(self).name)
            reactor.startRunning(installSignalHandlers=False)
        except BaseException:
            _release(reactor)
            raise
        self._reactor = reactor

    async def stop(self) -> None:
        """Stop the reactor (Twisted's shutdown triggers run); the loop keeps running."""
        reactor, self._reactor = self._reactor, None
        if reactor is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        reactor.addSystemEventTrigger("after", "shutdown", finished)
        try:
            reactor.stop()
            await done
        finally:
            _release(reactor)


def _install(reactor: _AsyncioReactor, label: str) -> None:
    current: object = sys.modules.get(_REACTOR_MODULE)
    if isinstance(current, _AsyncioReactor) and not current.running:
        del sys.modules[_REACTOR_MODULE]  # an earlier run's, stopped: replaced
    elif current is not None and not _ever_ran(current):
        # Importing twisted.internet.reactor (making a Site does) installs Twisted's
        # default reactor; one that never ran is replaced, and the replacement said.
        logger.info(
            "%s: replacing Twisted's %s, installed when something imported "
            "twisted.internet.reactor, by its asyncio reactor on the graph's loop; code "
            "that kept the old one should use twisted.internet.reactor after the start",
            label,
            type(current).__name__,
        )
        del sys.modules[_REACTOR_MODULE]
    elif current is not None:
        kind = type(current).__name__
        raise tether.DefinitionError(
            f"{label}: the process has a Twisted reactor already ({kind}, installed when "
            f"something imported twisted.internet.reactor), so Twisted's asyncio reactor "
            f"cannot be installed. Import your Twisted code after the Reactor service "
            f"started (or install it yourself), or give Reactor(install=False) and pass "
            f"reactor.reactor to the Twisted code."
        )
    installReactor(reactor)


def _ever_ran(reactor: object) -> bool:
    return bool(getattr(reactor, "running", False) or getattr(reactor, "_startedBefore", True))


def _release(reactor: _AsyncioReactor) -> None:
    """Close what the reactor holds on the loop: its timer and its waker."""
    handle = getattr(reactor, "_timerHandle", None)
    if handle is not None:
        handle.cancel()
    waker = getattr(reactor, "waker", None)
    if waker is not None:
        reactor.removeReader(waker)
        waker.connectionLost(None)
        reactor.waker = None


class _Tracking(policies.WrappingFactory):
    """The listener's factory: every connection known, HTTP ones drained politely."""

    def __init__(self, wrapped: Any, listener: Listener) -> None:
        super().__init__(wrapped)
        self.listener = listener
        self.requests: dict[object, int] = {}
        """Requests begun per HTTP channel (the first ones are still awaited)."""

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        wrapper = super().buildProtocol(addr)
        inner = _http_channel(wrapper)
        if inner is not None:
            self.requests[wrapper] = 0
            original = inner.checkPersistence

            def check_persistence(request: Any, version: bytes) -> bool:
                self.requests[wrapper] = self.requests.get(wrapper, 0) + 1
                keep: bool = original(request, version)
                if keep and self.listener.draining:
                    request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
                    return False
                return keep

            inner.checkPersistence = check_persistence  # type: ignore[method-assign]
        return wrapper

    def unregisterProtocol(self, p: Any) -> None:  # noqa: N802 - Twisted's name
        self.requests.pop(p, None)
        super().unregisterProtocol(p)


def _http_channel(wrapper: Any) -> http.HTTPChannel | None:
    """The HTTP channel behind a connection's protocol, if it speaks HTTP/1.

    A `Site` builds a `_GenericHTTPChannelProtocol`, a proxy that would switch to
    HTTP/2 on a TLS negotiation; the HTTP/1 channel it talks through is its `_channel`.
    """
    inner = getattr(wrapper, "wrappedProtocol", wrapper)
    inner = getattr(inner, "_channel", inner)
    return inner if isinstance(inner, http.HTTPChannel) else None


def _http_idle(wrapper: Any) -> bool:
    channel = _http_channel(wrapper)
    return channel is not None and not channel.requests


class Listener(tether.Service):
    """A Twisted protocol factory listening on TCP, as a service of the graph.

    `factory` is an `IProtocolFactory`: a `twisted.web.server.Site`, or a
    `protocol.Factory` of your protocol. `reactor` is the
    [`Reactor`][tether.ext.twisted.Reactor] service to listen with (a dependency,
    with `uses`: other services to start first). Where: `host` and `port`
    (default `127.0.0.1:8000`, `port=0` picks a free one, see `port`), or `sock`,
    a bound socket someone else owns (the listener adopts a duplicate); given none
    of them, the process's [`listeners`][tether.listeners] when it was handed sockets
    (a pre-fork worker, systemd socket activation). A `Site`
    (any `HTTPFactory`) is given the running reactor when the listener starts.

    How it stops: from the [`DRAIN`][tether.health.DRAIN] stage on, HTTP responses
    (a `Site`, or any `HTTPFactory`) carry `Connection: close` and their connection
    closes once they are sent; then `stop` stops listening, gives a connection
    accepted just before to send its first request, closes every connection that is
    idle (for HTTP: no request in flight; for other protocols, what `idle` says of
    the protocol, and by default none), waits up to `drain_timeout` seconds for the
    others to end, and closes those left. Serve [`Health`][tether.health.Health] on
    its own port beside it for readiness.
    """

    def __init__(
        self,
        factory: Any,
        *,
        reactor: Reactor,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        uses: list[tether.ServiceBase] | None = None,
        drain_timeout: float = 10.0,
        idle: Callable[[Any], bool] | None = None,
        name: str | None = None,
    ) -> None:
        owner = "tether.ext.twisted.Listener"
        if not interfaces.IProtocolFactory.providedBy(factory):
            raise TypeError(
                f"{owner} listens with a Twisted protocol factory (a twisted.web.server.Site, "
                f"a protocol.Factory), got {factory!r} ({type(factory).__name__})."
            )
        if not isinstance(reactor, Reactor):
            raise TypeError(
                f"{owner}: reactor= takes the tether.ext.twisted.Reactor service, got {reactor!r}."
            )
        check_address(owner, host, port, sock)
        self.factory = factory
        self.reactor = reactor
        self.drain_timeout = check_seconds(owner, "drain_timeout", drain_timeout)
        self.idle = idle
        if name is not None:
            self.name = name
        self.draining = False
        self._uses = list(uses or ())
        self._host = host or DEFAULT_HOST
        self._port = _DEFAULT_PORT if port is None else port
        self._sock = sock
        self._inherit = host is None and port is None and sock is None
        self._listening: list[Any] = []
        self._tracking: _Tracking | None = None

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        """The reactor, then what `uses` lists."""
        return [self.reactor, *self._uses]

    @property
    def graceful_shutdown_timeout(self) -> float:
        """Room for the connections to finish (`drain_timeout`) and to close."""
        return self.drain_timeout + 10

    async def start(self) -> None:
        """Listen, with the running reactor."""
        self.draining = False
        reactor = self.reactor.reactor
        if isinstance(self.factory, http.HTTPFactory):
            # A Site keeps the reactor it was made with (for timeouts and log dates): made
            # before this run's reactor existed, it would hold an older one.
            self.factory.reactor = reactor
        tracking = _Tracking(self.factory, self)
        given = [self._sock] if self._sock is not None else []
        if self._inherit:
            given = tether.listeners()
        listening: list[Any] = []
        try:
            for sock in given:
                copy = sock.dup()
                try:
                    copy.setblocking(False)  # noqa: FBT003 - the socket API
                    listening.append(reactor.adoptStreamPort(copy.fileno(), copy.family, tracking))
                finally:
                    copy.close()  # Twisted adopted a duplicate of its own
            if not given:
                listening.append(reactor.listenTCP(self._port, tracking, interface=self._host))
        except BaseException:
            for port in listening:
                port.stopListening()
            raise
        self._listening, self._tracking = listening, tracking
        label = tether.status(self).name
        for port in listening:
            address = port.getHost()
            shown = f"[{address.host}]" if ":" in address.host else address.host
            if isinstance(self.factory, http.HTTPFactory):
                logger.info("%s serving on http://%s:%d", label, shown, address.port)
            else:
                logger.info("%s listening on tcp://%s:%d", label, shown, address.port)

    @DRAIN
    def drain(self) -> None:
        """The stop begins (the drain stage): HTTP responses close their connection."""
        self.draining = True

    async def stop(self) -> None:
        """Stop listening, let connections finish, close what is left."""
        self.draining = True
        listening, self._listening = self._listening, []
        tracking, self._tracking = self._tracking, None
        if tracking is None:
            return
        for port in listening:
            await _future(port.stopListening())
        await until_first_requests(
            lambda: list(tracking.requests),
            lambda wrapper: tracking.requests.get(wrapper) == 0 and wrapper in tracking.protocols,
            min(FIRST_REQUEST_GRACE, self.drain_timeout),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while tracking.protocols and loop.time() < deadline:
            for wrapper in list(tracking.protocols):
                if _http_idle(wrapper) or (self.idle is not None and self.idle(wrapper)):
                    wrapper.transport.loseConnection()
            await asyncio.sleep(_POLL)  # polled: the protocols' state is Twisted's
        left = list(tracking.protocols)
        if left:
            logger.warning(
                "%s: %d connection(s) still open after drain_timeout=%gs are closed",
                tether.status(self).name,
                len(left),
                self.drain_timeout,
            )
            for wrapper in left:
                wrapper.transport.abortConnection()
        while tracking.protocols and loop.time() < deadline + 1:  # noqa: ASYNC110
            await asyncio.sleep(_POLL)

    @property
    def port(self) -> int | None:
        """The port it listens on while running (useful with `port=0`), else None."""
        if not self._listening:
            return None
        return int(self._listening[0].getHost().port)

    @property
    def url(self) -> str | None:
        """`http://host:port` it listens on while running, else None."""
        if not self._listening:
            return None
        address = self._listening[0].getHost()
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"http://{host}:{address.port}"


async def _future(result: Any) -> Any:
    """Await what Twisted returned: a Deferred (on the running loop) or a plain value."""
    if isinstance(result, defer.Deferred):
        return await result.asFuture(asyncio.get_running_loop())
    return result
