"""The runner's logging: opt-in setup, formats, lifecycle events as lines, loop errors."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

import tether
from tests.conftest import Log, Node
from tether._process import _logging
from tether._process._logging import (
    JsonFormatter,
    LifecycleLogger,
    configured,
    log_loop_exception,
    make_formatter,
    parse_level,
)


def _raise(exc: Exception) -> None:
    raise exc


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's own capture handlers set aside).

    A context manager, not a fixture: pytest adds its handlers after fixtures ran.
    """
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_setup_installs_one_handler_and_removes_it_afterwards() -> None:
    """With no configuration, tether adds its handler for the run and takes it away."""
    out = io.StringIO()
    with bare_root() as root:
        with configured("debug", "plain", out) as installed:
            assert installed
            assert len(root.handlers) == 1
            logging.getLogger("tether.test").debug("hello %s", "world")
        assert root.handlers == []
    assert out.getvalue().rstrip().endswith("DEBUG   tether.test: hello world")


def test_setup_never_touches_a_configuration_the_user_made() -> None:
    """A root logger with handlers is left exactly as it is: no handler, no level."""
    mine = logging.StreamHandler(io.StringIO())
    with bare_root() as root:
        root.addHandler(mine)
        root.setLevel(logging.ERROR)
        with configured("debug", "json") as installed:
            assert not installed
            assert root.handlers == [mine]
            assert root.level == logging.ERROR


def test_plain_format_is_one_readable_line() -> None:
    """Time, level, logger and message on one line."""
    record = logging.makeLogRecord(
        {"name": "tether.lifecycle", "levelno": 20, "levelname": "INFO", "msg": "Api started"}
    )
    line = make_formatter("plain", io.StringIO()).format(record)
    assert line.endswith(" INFO    tether.lifecycle: Api started")
    assert "\n" not in line


def test_auto_is_console_on_a_tty_and_json_otherwise_with_structlog() -> None:
    """With structlog installed, `auto` renders for humans on a tty, JSON elsewhere."""
    pytest.importorskip("structlog")
    record = logging.makeLogRecord(
        {"name": "tether.x", "levelno": 20, "levelname": "INFO", "msg": "hi", "service": "Api"}
    )
    piped = make_formatter("auto", io.StringIO()).format(record)
    assert json.loads(piped)["service"] == "Api"
    console = make_formatter("auto", TTY()).format(record)
    assert "hi" in console
    assert "service" in console
    with pytest.raises(json.JSONDecodeError):
        json.loads(console)


def test_without_structlog_auto_is_plain_and_json_still_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No structlog: `auto` is the plain format; `json` uses a stdlib formatter."""
    monkeypatch.setattr(_logging, "structlog_available", lambda: False)
    assert type(make_formatter("auto", TTY())) is logging.Formatter
    assert isinstance(make_formatter("json", io.StringIO()), JsonFormatter)


def test_console_without_structlog_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for the console renderer without structlog names the extra to install."""
    monkeypatch.setattr(_logging, "structlog_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'tether\[structlog\]'"):
        make_formatter("console", io.StringIO())


def test_stdlib_json_formatter_keeps_extra_fields_and_tracebacks() -> None:
    """The stdlib JSON lines carry level, logger, event, extras and the exception."""
    try:
        _raise(ValueError("boom"))
    except ValueError:
        record = logging.getLogger("tether.x").makeRecord(
            "tether.x", 40, __file__, 1, "failed %s", ("Api",), exc_info=sys.exc_info()
        )
    record.service = "Api"
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "error"
    assert data["event"] == "failed Api"
    assert data["service"] == "Api"
    assert "ValueError: boom" in data["exception"]


def test_unknown_level_names_the_choices() -> None:
    """A level that does not exist is refused with the accepted names."""
    assert parse_level("WARNING") == logging.WARNING
    with pytest.raises(ValueError, match="one of debug, info, warning, error, critical"):
        parse_level("loud")


async def test_every_lifecycle_event_is_logged_with_service_and_duration(
    log: Log, caplog: pytest.LogCaptureFixture
) -> None:
    """States, stages and hooks become records with service, stage and duration."""

    class Reloads(Node):
        async def on_reload(self) -> None:
            raise RuntimeError("bad config")

    root = Reloads("root", log, [Node("db", log)])
    caplog.set_level(logging.DEBUG, logger="tether.lifecycle")
    with tether.subscribe(LifecycleLogger()):
        async with root:
            with pytest.raises(RuntimeError):
                await tether.reload(root)
    records = [r for r in caplog.records if r.name == "tether.lifecycle"]
    messages = [r.getMessage() for r in records]
    assert any(m.startswith("Node started in ") and m.endswith(" ms") for m in messages)
    assert any(m.startswith("Reloads stopped in ") for m in messages)
    assert "Node starting" in messages
    assert any(m.startswith("stage start done in ") for m in messages)
    failed = next(r for r in records if "hook for stage reload raised" in r.getMessage())
    assert failed.levelno == logging.WARNING
    assert "RuntimeError: bad config" in failed.getMessage()
    started = next(r for r in records if r.getMessage().startswith("Node started"))
    assert started.__dict__["service"] == "Node"
    assert started.__dict__["state"] == "running"
    assert isinstance(started.__dict__["duration_ms"], float)


async def test_task_crash_is_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """A crashing background task is logged at ERROR with the task's name."""

    class Crashes(tether.Service):
        @tether.task
        async def work(self) -> None:
            raise KeyError("gone")

    with tether.subscribe(LifecycleLogger()):
        service = Crashes()
        with pytest.raises(KeyError):
            await service.run()
    crash = next(r for r in caplog.records if "crashed" in r.getMessage())
    assert crash.levelno == logging.ERROR
    assert "background task 'Crashes.work' crashed: KeyError: 'gone'" in crash.getMessage()


async def test_unhandled_loop_exceptions_go_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """The loop's exception handler logs the error with its traceback and context."""
    loop = asyncio.get_running_loop()
    try:
        _raise(ZeroDivisionError("lost?"))
    except ZeroDivisionError as exc:
        log_loop_exception(loop, {"message": "Exception in callback", "exception": exc})
    record = next(r for r in caplog.records if r.name == "tether.loop")
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Exception in callback"
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


def test_console_tracebacks_never_show_local_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """With rich installed, structlog's console shows locals by default: tether turns it off."""
    structlog = pytest.importorskip("structlog")
    monkeypatch.setattr(structlog.dev, "rich", object())  # as if rich were installed
    renderer = _logging._traceback_renderer(structlog)
    assert isinstance(renderer, structlog.dev.RichTracebackFormatter)
    assert renderer.show_locals is False
    monkeypatch.setattr(structlog.dev, "rich", None)
    assert _logging._traceback_renderer(structlog) is structlog.dev.plain_traceback
