"""mode's names on Service: `log`, `should_stop`, `add_future`, `add_dependency`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

import tether
from tests.conftest import Log, Node, bounded
from tether._process._logging import PLAIN_FORMAT, JsonFormatter


class Cache(tether.Service):
    def __init__(self, name: str = "") -> None:
        if name:
            self.name = name

    async def start(self) -> None:
        self.log.info("warming %d entries", 3)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(__name__)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield stream, handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_log_names_the_service_in_the_plain_format(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    """`self.log` is the module's logger; each line starts with the service's name."""
    stream, handler = captured
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    async with Cache(name="users"):
        pass
    line = stream.getvalue().strip()
    assert f" {__name__}: [Cache[users]] warming 3 entries" in line, line


async def test_log_carries_the_service_as_a_field_in_json(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    """JSON output has `service` as a key of its own, and the caller's extras stay."""
    stream, handler = captured
    handler.setFormatter(JsonFormatter())
    service = Cache()
    service.log.warning("late by %s", "2s", extra={"attempt": 2})
    data = json.loads(stream.getvalue())
    assert data["service"] == "Cache"
    assert data["attempt"] == 2
    assert data["event"] == "[Cache] late by 2s"


async def test_log_carries_the_service_as_a_field_with_structlog(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    """tether's structlog JSON formatter renders the same `service` key."""
    pytest.importorskip("structlog")
    from tether._process._logging import make_formatter

    stream, handler = captured
    handler.setFormatter(make_formatter("json", stream))
    Cache(name="users").log.info("ready")
    data = json.loads(stream.getvalue())
    assert data["service"] == "Cache[users]"
    assert data["event"] == "[Cache[users]] ready"


def test_a_service_with_its_own_log_attribute_keeps_it() -> None:
    """`log` yields to an attribute of that name, as facet programs define one."""
    own = Node("a", Log())
    assert isinstance(own.log, Log)


async def test_should_stop_follows_the_lifecycle() -> None:
    """True before start, False while running, True once a stop is requested."""
    seen: list[bool] = []

    class Poller(tether.Service):
        async def start(self) -> None:
            seen.append(self.should_stop)

        @tether.task
        async def poll(self) -> None:
            while not self.should_stop:
                await self.sleep(10)
            seen.append(self.should_stop)

    poller = Poller()
    assert poller.should_stop
    async with poller:
        assert not poller.should_stop
        poller.request_stop()
        assert poller.should_stop
    assert seen == [False, True]
    assert poller.should_stop


async def test_add_future_supervises_any_awaitable() -> None:
    """A future's exception crashes the stack, as add_task's does; a stop cancels it."""

    class Service(tether.Service):
        async def start(self) -> None:
            self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.task = self.add_future(self.future)
            self.idle = self.add_future(asyncio.Event().wait())

    service = Service()
    with pytest.raises(KeyError, match="boom"):
        async with service:
            service.future.set_exception(KeyError("boom"))
            await bounded(service.wait())
    assert service.idle.cancelled()


async def test_add_dependency_before_start_starts_it_first(log: Log) -> None:
    """Added in __init__, the dependency starts before and stops after the service."""

    class Parent(Node):
        def __init__(self) -> None:
            super().__init__("parent", log)
            self.child = self.add_dependency(Node("child", log))

    parent = Parent()
    async with parent:
        assert parent.child.running
    assert log == ["start:child", "start:parent", "stop:parent", "stop:child"]


async def test_add_dependency_while_running_is_an_error(log: Log) -> None:
    """The graph of a run is fixed: adding to it while running says what to do instead."""
    parent = Node("parent", log)
    async with parent:
        with pytest.raises(tether.ServiceStateError, match="async with service"):
            parent.add_dependency(Node("late", log))
