"""Liveness, readiness and status endpoints that follow the lifecycle.

[`Health`][tether.health.Health] is a service that answers `GET /livez`, `GET /readyz` and `GET
/status` on its own port (a small HTTP server from the standard library), or mounted
into an aiohttp or ASGI application served by [`ext.aiohttp`][tether.ext.aiohttp] or
[`ext.asgi`][tether.ext.asgi] (`Server(app, health=health)`). It imports the standard
library only; given `metrics=` (a
[`tether.ext.prometheus.Metrics`][tether.ext.prometheus.Metrics], `pip install
'tether[prometheus]'`) it serves `GET /metrics` too.

Readiness follows the lifecycle: 503 while the graph starts, 200 once the `started`
stage ran, 503 again from the moment the graph begins to stop. That moment is the
[`DRAIN`][tether.health.DRAIN] stage, placed before `stopping` and so before any `stopping` or
`stop` hook of any service; it then waits `drain_delay` seconds while every server
keeps serving (a load balancer or Kubernetes takes that long to stop sending traffic),
and only then do the services stop. Liveness stays 200 until the service itself stops,
which is after everything that depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any, Protocol

from ._core._base import record
from ._core._records import Record, ServiceState
from ._core._service import Service, status
from ._core._stages import STOPPING, Stage
from ._prefork._figures import MasterFigures, master_figures, worker_number
from ._process._listen import DEFAULT_HOST, check_address, check_seconds, completed, url_of
from ._process._observe import LifecycleRecorder, recorder_in_context
from ._process._picture import graph_records
from ._supervision._supervisor import added_children, children_by_state

__all__ = ["DRAIN", "Health", "MetricsSource"]

logger = logging.getLogger("tether.health")

DRAIN = Stage("drain", before=STOPPING, direction="gather")
"""The stage that begins every stop: before `stopping`, every service at once.

[`Health`][tether.health.Health] turns readiness to 503 in it and waits its `drain_delay`; the
servers of `tether.ext` answer with `Connection: close` from then on, so keep-alive
clients move to another instance. Mark a method with `@DRAIN` to do your own work at
that moment (it runs beside the delay):

```python
class Consumer(tether.Service):
    @DRAIN
    def pause(self) -> None:
        self.accepting = False
```
"""

_HEAD_LIMIT = 8192
_READ_TIMEOUT = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class MetricsSource(Protocol):
    """What `Health(metrics=...)` serves on `/metrics`.

    [`tether.ext.prometheus.Metrics`][tether.ext.prometheus.Metrics] is one; write your own
    for another format. `render` is called for each request with the `Health` that
    serves it and returns the content type and the body. A source that also has an
    `attach(health)` method is given its `Health` when that is created (and may refuse
    it by raising).
    """

    def render(self, health: Health) -> tuple[str, bytes]:
        """The content type and the body of one answer to `GET /metrics`."""
        ...


class ServiceReport:
    """One service as `/metrics` reports it (what `Health` hands its metrics source)."""

    __slots__ = (
        "children",
        "loop_blocks",
        "name",
        "restarts",
        "skipped_ticks",
        "start_duration",
        "state",
        "stop_duration",
        "tasks",
    )

    def __init__(
        self,
        *,
        name: str,
        state: ServiceState,
        restarts: int,
        tasks: int,
        skipped_ticks: int,
        start_duration: float | None,
        stop_duration: float | None,
        children: dict[str, int] | None = None,
        loop_blocks: int = 0,
    ) -> None:
        self.name = name
        self.state = state
        self.restarts = restarts
        self.tasks = tasks
        self.skipped_ticks = skipped_ticks
        self.start_duration = start_duration
        self.stop_duration = stop_duration
        self.children = children
        """For a supervisor, how many children it has in each state (given and added)."""
        self.loop_blocks = loop_blocks
        """How often the blocked-loop detector found this service blocking the loop."""


class _Reply:
    """One answer of the health endpoints: status, content type and body."""

    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body

    @classmethod
    def text(cls, status: int, text: str) -> _Reply:
        return cls(status, "text/plain; charset=utf-8", (text + "\n").encode())

    def headers(self) -> list[tuple[str, str]]:
        """The headers that go with it (besides length and connection handling)."""
        headers = [("Content-Type", self.content_type), ("Cache-Control", "no-store")]
        if self.status == 405:
            headers.append(("Allow", "GET, HEAD"))
        return headers

    def encode(self, method: str) -> bytes:
        """The whole HTTP/1.1 response, closing the connection (no body for HEAD)."""
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in self.headers()]
        lines += [f"Content-Length: {len(self.body)}", "Connection: close", "", ""]
        head = "\r\n".join(lines).encode("latin-1")
        return head if method == "HEAD" else head + self.body


class Health(Service):
    """`/livez`, `/readyz` and `/status` for probes, following the lifecycle.

    Give `port` (`0` picks a free one; `host` defaults to `127.0.0.1`, use
    `"0.0.0.0"` in a container) or `sock` (a socket bound by someone else, such as a
    pre-fork master) to serve the endpoints on their own port; give neither and mount
    it into your application with `tether.ext.aiohttp.Server(app, health=health)` or
    `tether.ext.asgi.Server(app, health=health)`. `prefix` puts the paths under a
    common prefix (`prefix="/_"` serves `/_/livez`). `metrics` adds `/metrics`,
    answered by its `render` (see [`tether.ext.prometheus.Metrics`][tether.ext.prometheus.Metrics]).

    * `/livez`: 200 `ok` while the endpoints are served, including while stopping.
    * `/readyz`: 200 `ready` once the whole graph it belongs to has started (the
      `started` stage) and while every service in it is running; otherwise 503 with
      the reason (`starting`, `stopping`, `Database is stopped`).
    * `/status`: 200 with a JSON document: `ready`, `reason`, and `services`,
      one entry per service of the graph with `name`, `state`, `uptime`
      (seconds, null unless running), `restarts`, `loop_blocks` (times its code
      blocked the event loop, with the runner's `blocking_timeout`), `tasks`
      (running background tasks), `dependencies` (names) and `error` (what ended its
      last run badly).

    When the graph begins to stop, readiness turns 503 in the [`DRAIN`][tether.health.DRAIN] stage,
    before any `stopping` or `stop` hook runs anywhere, and the stop then waits
    `drain_delay` seconds (default 5) while every server keeps serving, for load
    balancers to take this instance out. A graph that never became ready skips the
    delay. Make it a dependency of what it reports on, so that it stops last and
    liveness stays 200 until the end: `Server(app, health=health)` does that (and
    answers the endpoints on the application's port too):

    ```python
    health = Health(port=8081, drain_delay=10)  # or Health() to mount it only
    api = tether.ext.aiohttp.Server(app, port=8080, health=health)
    tether.run(api)
    ```
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        drain_delay: float = 5.0,
        prefix: str = "",
        metrics: MetricsSource | None = None,
    ) -> None:
        check_address("Health", host, port, sock)
        if metrics is not None and not callable(getattr(metrics, "render", None)):
            raise TypeError(
                f"Health: metrics= takes a metrics source such as "
                f"tether.ext.prometheus.Metrics(), got {metrics!r}."
            )
        if host is not None and port is None:
            raise TypeError(
                f"Health(host={host!r}) needs port= too (0 picks a free port); without "
                f"a port, mount it into your application instead."
            )
        self.drain_delay = check_seconds("Health", "drain_delay", drain_delay)
        given: object = prefix
        if not isinstance(given, str) or (prefix and not prefix.startswith("/")):
            raise ValueError(f"Health: prefix= must be '' or start with '/', got {prefix!r}.")
        self.prefix = prefix.rstrip("/")
        self._host = host or DEFAULT_HOST
        self._port = port
        self._sock = sock
        self._started = False
        self._draining = False
        self._roots: list[Record] | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._routes = {
            f"{self.prefix}/livez": self._livez,
            f"{self.prefix}/readyz": self._readyz,
            f"{self.prefix}/status": self._status,
        }
        self.metrics = metrics
        self._recorder: LifecycleRecorder | None = None
        if metrics is not None:
            self._routes[f"{self.prefix}/metrics"] = self._metrics
            attach = getattr(metrics, "attach", None)
            if callable(attach):
                attach(self)

    @property
    def graceful_shutdown_timeout(self) -> float:
        """The drain delay plus 10 seconds to close the endpoints."""
        return self.drain_delay + 10

    # -------------------------------------------------------------- what it says

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths it answers after the prefix: `/livez`, `/readyz`, `/status`, `/metrics`."""
        return tuple(self._routes)

    @property
    def ready(self) -> bool:
        """Whether `/readyz` answers 200 now."""
        return self._readiness() is None

    @property
    def draining(self) -> bool:
        """Whether the graph has begun to stop (the [`DRAIN`][tether.health.DRAIN] stage ran)."""
        return self._draining

    def _readiness(self) -> str | None:
        """None when ready, else why not."""
        if self._draining:
            return "stopping"
        if not self._started:
            return "starting"
        waiting: str | None = None
        for rec in self._records():
            if rec.state is ServiceState.CREATED:
                waiting = waiting or f"{rec.name} has not started"
            elif rec.state is not ServiceState.RUNNING:
                return f"{rec.name} is {rec.state.value}"
        return waiting

    def _records(self) -> list[Record]:
        """Every service of the graphs it belongs to: found through its dependents.

        Not the children a supervisor's `start_child` added (one per connection, say):
        the supervisor's entry counts them.

        Stopping releases those links before the first hook runs, so the last graph
        seen is kept and reported until the end.
        """
        own = record(self)
        if own.holders or self._roots is None:
            self._roots = _roots_of(own)
        seen: set[int] = set()
        found: list[Record] = []
        for root in self._roots:
            for rec in graph_records(root.service, added=False):
                if id(rec) not in seen:
                    seen.add(id(rec))
                    found.append(rec)
        return found

    def snapshot(self) -> dict[str, Any]:
        """The `/status` document: readiness, and every service's state and counters."""
        services = []
        for rec in self._records():
            snap = status(rec.service)
            added = added_children(rec.service)
            entry: dict[str, Any] = {
                "name": snap.name,
                "state": snap.state.value,
                "uptime": None if snap.uptime is None else round(snap.uptime, 3),
                "restarts": snap.restarts,
                "loop_blocks": snap.loop_blocks,
                "tasks": len(snap.tasks),
                "dependencies": [
                    record(dep).name for dep in snap.dependencies if record(dep) not in added
                ],
                "error": None if snap.error is None else _error_text(snap.error),
            }
            children = children_by_state(rec.service)
            if children is not None:  # a supervisor: its children by state, added ones too
                entry["children"] = children
            services.append(entry)
        reason = self._readiness()
        return {"ready": reason is None, "reason": reason or "ready", "services": services}

    def _service_figures(self) -> list[ServiceReport]:
        """Every service of the graph with its counters and durations, for `/metrics`.

        The durations come from the lifecycle events: those of the recorder subscribed
        where the graph was started (the runner's, or a `Metrics` subscribed around it).
        Services of the same name are told apart by `#2`, `#3`... in the graph's order,
        so each one is a series of its own.
        """
        recorder = self._recorder
        found = []
        seen: dict[str, int] = {}
        for rec in self._records():
            snap = status(rec.service)
            recorded = None if recorder is None else recorder.figures(rec.service)
            times = seen[snap.name] = seen.get(snap.name, 0) + 1
            found.append(
                ServiceReport(
                    name=snap.name if times == 1 else f"{snap.name}#{times}",
                    state=snap.state,
                    restarts=snap.restarts,
                    tasks=len(snap.tasks),
                    skipped_ticks=(
                        snap.skipped_ticks if recorded is None else recorded.skipped_ticks
                    ),
                    start_duration=None if recorded is None else recorded.start_duration,
                    stop_duration=None if recorded is None else recorded.stop_duration,
                    children=children_by_state(rec.service),
                    loop_blocks=snap.loop_blocks,
                )
            )
        return found

    def _master_figures(self) -> MasterFigures | None:
        """The pre-fork master's figures, in one of its workers; None elsewhere."""
        return master_figures()

    def _worker_number(self) -> int | None:
        """The number of the pre-fork worker this runs in; None elsewhere."""
        return worker_number()

    def _livez(self) -> _Reply:
        return _Reply.text(200, "ok")

    def _readyz(self) -> _Reply:
        reason = self._readiness()
        return _Reply.text(200, "ready") if reason is None else _Reply.text(503, reason)

    def _status(self) -> _Reply:
        body = json.dumps(self.snapshot(), indent=2) + "\n"
        return _Reply(200, "application/json", body.encode())

    def _metrics(self) -> _Reply:
        assert self.metrics is not None
        try:
            content_type, body = self.metrics.render(self)
        except Exception as exc:
            logger.exception("/metrics: %r failed to render", self.metrics)
            return _Reply.text(500, f"metrics unavailable: {type(exc).__name__}: {exc}")
        return _Reply(200, content_type, body)

    def _respond(self, method: str, path: str) -> _Reply | None:
        """The reply for `method path`, or None if the path is not one of the endpoints.

        This is what the mounted routes and the own server call; `GET` and `HEAD`
        are answered, other methods get 405.
        """
        endpoint = self._routes.get(path)
        if endpoint is None:
            return None
        if method not in ("GET", "HEAD"):
            return _Reply.text(405, f"{method} not allowed; use GET")
        return endpoint()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve the endpoints on their own port, if one was given; readiness is 503."""
        self._started = False
        self._draining = False
        self._roots = None
        if self.metrics is not None:
            self._recorder = recorder_in_context()
            if self._recorder is None:
                logger.warning(
                    "/metrics will not report start and stop durations: they come from "
                    "the lifecycle events of the code that starts the graph. Start it "
                    "with tether.run (or `tether run`), or inside "
                    "`with tether.subscribe(metrics):`."
                )
        if self._sock is None and self._port is None:
            return
        if self._sock is not None:
            sock = self._sock.dup()
            try:
                server = await asyncio.start_server(
                    self._serve, sock=sock, limit=_HEAD_LIMIT, start_serving=False
                )
            except BaseException:
                sock.close()
                raise
        else:
            server = await asyncio.start_server(
                self._serve, self._host, self._port, limit=_HEAD_LIMIT, start_serving=False
            )
        try:
            # Not cancellable half-way: a server lost while serving would leak its socket.
            await completed(server.start_serving())
        except BaseException:
            server.close()
            raise
        self._server = server
        logger.info(
            "health endpoints on %s%s/livez, /readyz, /status%s",
            self.url,
            self.prefix,
            ", /metrics" if self.metrics is not None else "",
        )

    def on_started(self) -> None:
        """The whole graph has started: ready."""
        self._roots = _roots_of(record(self))
        self._started = True
        logger.info("ready: /readyz answers 200")

    @DRAIN
    async def drain(self) -> None:
        """The stop begins: readiness 503, then `drain_delay` seconds of serving."""
        was_ready = self._started and not self._draining
        self._draining = True
        if not was_ready or not self.drain_delay:
            logger.info("not ready: /readyz answers 503 (stopping)")
            return
        logger.info(
            "not ready: /readyz answers 503 (stopping); serving %gs more while load "
            "balancers take this instance out",
            self.drain_delay,
        )
        await asyncio.sleep(self.drain_delay)

    async def stop(self) -> None:
        """Close the own port, if any, and the connections still open on it."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in self._connections.values():
            writer.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        await server.wait_closed()

    # ------------------------------------------------------------ the own server

    @property
    def port(self) -> int | None:
        """The port of the own server while it runs (useful with `port=0`), else None."""
        server = self._server
        if server is None or not server.sockets:
            return None
        address = server.sockets[0].getsockname()
        return address[1] if isinstance(address, tuple) else None

    @property
    def url(self) -> str | None:
        """`http://host:port` of the own server while it runs, else None."""
        server = self._server
        if server is None or not server.sockets:
            return None
        return url_of(server.sockets[0])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            method, reply = await self._read(reader)
            writer.write(reply.encode(method))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[str, _Reply]:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return "GET", _Reply.text(408, "request head not received in time")
        except asyncio.LimitOverrunError:
            return "GET", _Reply.text(431, f"request head over {_HEAD_LIMIT} bytes")
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError from exc
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "GET", _Reply.text(400, "expected a request line such as GET /livez HTTP/1.1")
        method = parts[0].decode("latin-1")
        path = parts[1].split(b"?", 1)[0].decode("latin-1")
        reply = self._respond(method, path)
        if reply is None:
            reply = _Reply.text(404, f"no such endpoint; try {', '.join(self._routes)}")
        return method, reply


def _roots_of(own: Record) -> list[Record]:
    """The records at the top of every graph `own` belongs to (found via dependents)."""
    roots: list[Record] = []
    seen = {id(own)}
    stack = [own]
    while stack:
        rec = stack.pop()
        if not rec.holders:
            roots.append(rec)
        for holder in rec.holders:
            if id(holder) not in seen:
                seen.add(id(holder))
                stack.append(holder)
    return roots


def _error_text(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
