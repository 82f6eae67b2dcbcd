"""tether.ext.twisted: Twisted's asyncio reactor in a graph, real protocols on loopback."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest

pytest.importorskip("twisted")
pytest.importorskip("aiohttp")  # the load test's client

import aiohttp
from twisted.internet import protocol
from twisted.protocols import basic
from twisted.web import resource, server

import tether
from tests.conftest import bounded
from tests.httpclient import fetch
from tests.serving import Gate, drain_under_load, indices_in_order
from tether.ext.twisted import Listener, Reactor
from tether.health import Health


class Step(tether.Service):
    """Records its start and stop in a shared log."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start:{self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop:{self.name}")


class Echo(basic.LineReceiver):
    """Answers each line with the line, upper-cased, and logs its connection's end."""

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted's name
        self.sendLine(line.upper())

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        self.factory.log.append("echo connection lost")


class EchoFactory(protocol.Factory):
    protocol = Echo

    def __init__(self, log: list[str]) -> None:
        self.log = log


async def test_a_twisted_protocol_serves_and_stops_in_order() -> None:
    """Reactor, database, listener start in order; the protocol answers; on stop the
    listener ends its connection first, then the database stops, the reactor last."""
    log: list[str] = []
    reactor = Reactor()
    listener = Listener(
        EchoFactory(log),
        reactor=reactor,
        port=0,
        uses=[Step("database", log)],
        idle=lambda connection: True,  # a line protocol between lines can be closed
        drain_timeout=2,
    )

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.STATE and event.service in (reactor, listener):
            log.append(f"{type(event.service).__name__} {event.state}")

    with tether.subscribe(on_event):
        async with listener:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"hello\r\n")
            log.append((await bounded(reader.readline())).decode().strip())
            ended = asyncio.create_task(reader.read())
        assert await bounded(ended) == b""  # the listener closed the idle connection
        writer.close()
    assert log == [
        "Reactor starting",
        "Reactor running",
        "start:database",
        "Listener starting",
        "Listener running",
        "HELLO",
        "Listener stopping",
        "echo connection lost",
        "Listener stopped",
        "stop:database",
        "Reactor stopping",
        "Reactor stopped",
    ]


async def test_the_reactor_is_installed_and_replaced_on_the_next_run() -> None:
    """`twisted.internet.reactor` is the running reactor; a later run installs its own."""
    first = Reactor()
    async with first:
        from twisted.internet import reactor as installed

        assert installed is first.reactor
        assert installed.running
    second = Reactor()
    async with second:
        assert sys.modules["twisted.internet.reactor"] is second.reactor
    with pytest.raises(tether.ServiceStateError, match="the reactor exists while the service"):
        _ = second.reactor


class Work(resource.Resource):
    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(self, gate: Gate | None = None, health: Health | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.health = health

    def render_GET(self, request: Any) -> Any:  # noqa: N802 - Twisted's name
        path = request.path.decode()
        if path == "/readyz" and self.health is not None:  # as a load balancer probes it
            request.setResponseCode(200 if self.health.ready else 503)
            return b"ready" if self.health.ready else b"stopping"
        if path == "/slow":
            assert self.gate is not None
            hold = asyncio.ensure_future(self.gate.hold())

            def answer(task: asyncio.Task[str]) -> None:
                request.write(task.result().encode())
                request.finish()

            hold.add_done_callback(answer)
            return server.NOT_DONE_YET
        return path.rsplit("/", 1)[-1].encode()


async def test_twisted_web_drain_under_load_fails_no_request() -> None:
    """A twisted.web Site under keep-alive load across a stop, with requests parked when
    the stop hook begins: every one answered, none failed."""
    gate = Gate(10)
    health = Health(port=0, drain_delay=0.3)
    reactor = Reactor()
    site = server.Site(Work(gate, health))
    listener = Listener(site, reactor=reactor, port=0, uses=[health], name="twisted")
    outcome = await drain_under_load(listener, listener, gate)
    assert outcome.failures == []
    assert len(outcome.fast) >= 200
    assert all(status == 200 for _, status, _, _ in outcome.fast)
    assert indices_in_order(outcome)
    assert [body for _, body, _ in outcome.slow] == ["slow done"] * 10


async def test_a_site_on_a_given_socket_and_health_on_its_own_port() -> None:
    """sock= is adopted (a duplicate); the health endpoints answer beside it."""
    import socket

    health = Health(port=0, drain_delay=0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        listener = Listener(server.Site(Work()), reactor=Reactor(), sock=sock, uses=[health])
        async with listener:
            work = await fetch(f"{listener.url}/work/4")
            ready = await fetch(f"{health.url}/readyz")
        assert (work.text, ready.status) == ("4", 200)
        assert sock.fileno() != -1  # still the owner's


def test_what_is_not_a_factory_or_a_reactor_is_refused() -> None:
    """The constructor names the mistake."""
    with pytest.raises(TypeError, match="listens with a Twisted protocol factory"):
        Listener(object(), reactor=Reactor())
    with pytest.raises(TypeError, match=r"reactor= takes the tether\.ext\.twisted\.Reactor"):
        Listener(server.Site(Work()), reactor=object())  # type: ignore[arg-type, unused-ignore]


async def test_a_default_reactor_that_never_ran_is_replaced_saying_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Making a Site imports twisted.internet.reactor, which installs Twisted's default
    reactor; the Reactor service replaces it (it never ran) and logs a warning."""
    from twisted.internet import epollreactor

    caplog.set_level(logging.INFO, logger="tether.ext.twisted")
    sys.modules.pop("twisted.internet.reactor", None)
    default = epollreactor.EPollReactor()
    try:
        from twisted.internet.main import installReactor

        installReactor(default)
        site = server.Site(Work())
        listener = Listener(site, reactor=Reactor(), port=0)
        async with listener:
            assert (await fetch(f"{listener.url}/work/9")).text == "9"
            assert sys.modules["twisted.internet.reactor"] is listener.reactor.reactor
    finally:
        default.waker.connectionLost(None)
    assert "replacing Twisted's EPollReactor" in caplog.text


async def test_a_reactor_that_ran_is_not_replaced() -> None:
    """One that runs (or ran) belongs to someone: the start fails, naming the way out."""
    first = Reactor()
    async with first:
        with pytest.raises(tether.DefinitionError, match=r"Reactor\(install=False\)"):
            await Reactor().__aenter__()


async def test_keep_alive_clients_of_a_site_get_connection_close_during_the_drain() -> None:
    """From the drain stage on, a Site's responses carry Connection: close, and the
    connection closes once the response is sent (the client reconnects elsewhere)."""
    health = Health(port=0, drain_delay=0.3)
    listener = Listener(server.Site(Work()), reactor=Reactor(), port=0, uses=[health])
    await listener.__aenter__()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{listener.url}/work/1") as before:
                await before.read()
            stopping = asyncio.create_task(listener.__aexit__(None, None, None))
            while health.ready:
                await bounded(asyncio.sleep(0.005))
            async with session.get(f"{listener.url}/work/2") as during:
                await during.read()
            await bounded(stopping)
    finally:
        if listener.running:
            await listener.__aexit__(None, None, None)
    assert before.headers.get("Connection") is None
    assert during.headers["Connection"] == "close"


async def test_an_idle_keep_alive_connection_is_closed_at_the_stop_not_left_to_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Site's connection with no request in flight is closed by the listener's stop
    as an idle one, not kept until drain_timeout and then cut off."""
    caplog.set_level(logging.WARNING, logger="tether.ext.twisted")
    listener = Listener(server.Site(Work()), reactor=Reactor(), port=0, drain_timeout=30)
    await listener.__aenter__()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /work/5 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in await bounded(reader.readline())
        ended = asyncio.create_task(reader.read())
        stopping = asyncio.create_task(listener.__aexit__(None, None, None))
        await bounded(ended, 5)  # closed by the listener, well before drain_timeout
        writer.close()
        await bounded(stopping, 5)
    finally:
        if listener.running:
            await listener.__aexit__(None, None, None)
    assert "still open after drain_timeout" not in caplog.text


async def test_a_connection_of_a_protocol_without_idle_is_cut_off_at_drain_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without idle=, a connection still open when drain_timeout ends is aborted, with a
    warning, and only then does what the listener uses stop."""
    caplog.set_level(logging.WARNING, logger="tether.ext.twisted")
    log: list[str] = []
    listener = Listener(
        EchoFactory(log), reactor=Reactor(), port=0, uses=[Step("database", log)], drain_timeout=0.2
    )
    async with listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"hello\r\n")
        assert await bounded(reader.readline()) == b"HELLO\r\n"
    with pytest.raises(ConnectionResetError):
        await bounded(reader.read())
    writer.close()
    assert log == ["start:database", "echo connection lost", "stop:database"]
    assert "1 connection(s) still open after drain_timeout=0.2s are closed" in caplog.text
