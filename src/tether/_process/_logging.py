"""Logging for the runner: an opt-in setup, lifecycle events as log lines, loop errors.

The setup happens only when nobody configured logging before (the root logger has no
handler); a configuration the user made is never touched. Plain stdlib logging with a
one-line format by default; with structlog installed (`tether[structlog]`), a pretty
console on a tty and JSON lines otherwise. structlog is used as a formatter only:
`structlog.configure()` is never called, so a structlog setup of yours stays yours.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, Literal, TextIO

from tether._core._events import EventKind, LifecycleEvent
from tether._core._records import ServiceState, display_name

__all__ = [
    "LifecycleLogger",
    "ProcessFields",
    "configured",
    "log_loop_exception",
    "log_status",
    "parse_level",
]

LogFormat = Literal["auto", "plain", "console", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "plain", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PROCESS_FORMAT = "%(asctime)s %(levelname)-7s [%(process_tag)s] %(name)s: %(message)s"
"""Plain lines of a pre-fork master and its workers: `[worker 2 pid 4242]`."""

lifecycle_logger = logging.getLogger("tether.lifecycle")
loop_logger = logging.getLogger("tether.loop")
status_logger = logging.getLogger("tether.status")

# Attributes every LogRecord has; anything else was passed in `extra`.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def parse_level(level: str | int) -> int:
    """`"info"` / `"INFO"` / `20` as a logging level; ValueError naming the choices."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str) and level.lower() in LOG_LEVELS:
        return logging.getLevelNamesMapping()[level.upper()]
    raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}.")


def structlog_available() -> bool:
    """Whether the structlog extra is installed (checked without importing it)."""
    import importlib.util  # noqa: PLC0415 - only the runner needs it

    return importlib.util.find_spec("structlog") is not None


def _wants_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProcessFields(logging.Filter):
    """Adds `pid` and, in a pre-fork worker, `worker` (its number) to every record.

    Installed on the handler of a pre-fork master, which the workers inherit when they
    fork: the same handler then tells the processes apart. The number comes from
    `TETHER_WORKER`, which the master sets in each worker.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        record.pid = record.process
        worker = os.environ.get("TETHER_WORKER")
        if worker and worker.isdigit():
            record.worker = int(worker)
        return True


class _ProcessFormatter(logging.Formatter):
    """Plain lines that name the process: `[master pid 4240]`, `[worker 2 pid 4242]`."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        worker = getattr(record, "worker", None)
        role = "master" if worker is None else f"worker {worker}"
        values = {**vars(record), "process_tag": f"{role} pid {record.process}"}
        return PROCESS_FORMAT % values


def _plain(processes: bool) -> logging.Formatter:
    return _ProcessFormatter(PROCESS_FORMAT) if processes else logging.Formatter(PLAIN_FORMAT)


def make_formatter(
    log_format: LogFormat, stream: TextIO, *, processes: bool = False
) -> logging.Formatter:
    """The formatter for `log_format` on `stream` (`auto` resolved here).

    `auto` is a colored console on a terminal and JSON lines otherwise when structlog
    is installed, plain lines without it. `processes`: the plain format names the
    process of each line (a pre-fork master and its workers; the other formats carry
    the fields `ProcessFields` adds).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}.")
    has_structlog = structlog_available()
    if log_format == "auto":
        if not has_structlog:
            return _plain(processes)
        log_format = "console" if _isatty(stream) else "json"
    if log_format == "plain":
        return _plain(processes)
    if not has_structlog:
        if log_format == "json":
            return JsonFormatter()
        raise ImportError(
            "log format 'console' needs structlog: pip install 'tether[structlog]' "
            "(or use --log-format plain or json)."
        )
    return _structlog_formatter(log_format == "json", stream)


def _structlog_formatter(json: bool, stream: TextIO) -> logging.Formatter:
    import structlog  # noqa: PLC0415 - optional extra, loaded on use

    pre_chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=json),
    ]
    # Tracebacks never show the frames' local variables: a revealed secret (a password
    # passed to connect()) sits in one as often as not.
    if json:
        processors: list[Any] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(
                colors=_wants_color(stream), exception_formatter=_traceback_renderer(structlog)
            ),
        ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=pre_chain, processors=processors)


def _traceback_renderer(structlog: Any) -> Any:
    """The console's traceback renderer: rich's if installed, without local variables.

    structlog's default shows them with rich or better-exceptions installed.
    """
    if getattr(structlog.dev, "rich", None) is not None:
        return structlog.dev.RichTracebackFormatter(show_locals=False)
    return structlog.dev.plain_traceback


class JsonFormatter(logging.Formatter):
    """One JSON object per line, without structlog: time, level, logger, event, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one line of JSON."""
        import json  # noqa: PLC0415 - only JSON logging needs it

        data: dict[str, Any] = {
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        data.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_") and value is not None
        )
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=repr)


@contextlib.contextmanager
def configured(
    level: str | int,
    log_format: LogFormat,
    stream: TextIO | None = None,
    *,
    processes: bool = False,
) -> Iterator[bool]:
    """Set up logging for the `with` block unless it is configured already.

    Yields whether tether set it up. On leaving, tether's handler is flushed and
    removed and the root level restored, so a program that goes on afterwards (a
    test, a notebook) finds logging as it was. `processes` (a pre-fork master):
    every record carries the pid and worker number of the process that wrote it.
    """
    root = logging.getLogger()
    if root.handlers:
        yield False
        return
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(make_formatter(log_format, out, processes=processes))
    if processes:
        handler.addFilter(ProcessFields())
    numeric = parse_level(level)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(numeric)
    try:
        yield True
    finally:
        handler.flush()
        root.removeHandler(handler)
        root.setLevel(previous)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f" in {seconds * 1000:.2f} ms"


def _error_text(error: BaseException | None) -> str:
    return "" if error is None else f": {type(error).__name__}: {error}"


class LifecycleLogger:
    """Logs every lifecycle event on `tether.lifecycle` with the service and duration.

    Transitions that end something (running, stopped, a stage) log at INFO with their
    duration; their beginnings and hook results at DEBUG; failures at WARNING or
    ERROR, as one line (the runner logs the final traceback once). Each record
    carries `service`, `stage`, `state` and `duration_ms` as extra fields for
    structured output.
    """

    def __call__(self, event: LifecycleEvent) -> None:
        kind = event.kind
        service = display_name(event.service) if event.service is not None else None
        duration_ms = None if event.duration is None else round(event.duration * 1000, 3)
        extra: dict[str, Any] = {}
        if service is not None:
            extra["service"] = service
        if duration_ms is not None:
            extra["duration_ms"] = duration_ms
        log = lifecycle_logger.log
        if kind is EventKind.STATE:
            state = event.state
            if state is not None:
                extra["state"] = state.value
            if state is ServiceState.RUNNING:
                log(logging.INFO, "%s started%s", service, _ms(event.duration), extra=extra)
            elif state is ServiceState.STOPPED:
                log(logging.INFO, "%s stopped%s", service, _ms(event.duration), extra=extra)
            elif state is ServiceState.FAILED:
                log(
                    logging.ERROR,
                    "%s failed%s%s",
                    service,
                    _ms(event.duration),
                    _error_text(event.error),
                    extra=extra,
                )
            elif state is not None:
                log(logging.DEBUG, "%s %s", service, state.value, extra=extra)
        elif kind is EventKind.STAGE_BEGIN:
            extra["stage"] = event.stage
            log(logging.DEBUG, "stage %s: %s services", event.stage, event.count, extra=extra)
        elif kind is EventKind.STAGE_END:
            extra["stage"] = event.stage
            level = logging.INFO if event.error is None else logging.WARNING
            log(
                level,
                "stage %s done%s (%s services)%s",
                event.stage,
                _ms(event.duration),
                event.count,
                "" if event.error is None else f"; first error{_error_text(event.error)}",
                extra=extra,
            )
        elif kind is EventKind.HOOK:
            extra["stage"] = event.stage
            if event.error is None:
                log(
                    logging.DEBUG,
                    "%s hook for stage %s returned%s",
                    service,
                    event.stage,
                    _ms(event.duration),
                    extra=extra,
                )
            else:
                log(
                    logging.WARNING,
                    "%s hook for stage %s raised%s%s",
                    service,
                    event.stage,
                    _ms(event.duration),
                    _error_text(event.error),
                    extra=extra,
                )
        elif kind is EventKind.TASK_CRASHED:
            extra["task"] = event.detail
            log(
                logging.ERROR,
                "%s: background task %r crashed%s",
                service,
                event.detail,
                _error_text(event.error),
                extra=extra,
            )
        elif kind is EventKind.RESTART:
            # tether.supervise logs the warning itself; here only the event, for completeness.
            extra["restarts"] = event.count
            log(
                logging.DEBUG,
                "%s restarted (restart %s): %s",
                service,
                event.count,
                event.detail,
                extra=extra,
            )
        elif kind is EventKind.TIMER_SKIPPED:
            # tether.tasks logs the warning itself; here only the event, for completeness.
            log(logging.DEBUG, "%s: %s skipped %s tick(s)", service, event.detail, event.count)
        elif kind is EventKind.LOOP_BLOCKED:
            # tether.blocking logs the warning and the stack itself; here only the event.
            log(
                logging.DEBUG,
                "%s blocked the event loop for %.3fs at %s",
                service or "code outside the services",
                event.duration or 0.0,
                event.detail,
                extra=extra,
            )


def log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Event-loop exception handler: unhandled errors go to `tether.loop`, never lost.

    A failing callback is named without its arguments (asyncio's own message shows
    their values, a revealed password among them).
    """
    del loop
    message = context.get("message") or "unhandled exception in the event loop"
    exc = context.get("exception")
    handle = context.get("handle")
    if isinstance(handle, asyncio.Handle):
        shown = _callback_name(handle)
        if message.startswith("Exception in callback "):
            message = f"Exception in callback {shown}"
    details = [
        f"{key}=<{type(value).__name__} {_callback_name(value)}>"
        if isinstance(value, asyncio.Handle)
        else f"{key}={value!r}"
        for key, value in context.items()
        if key not in ("message", "exception") and value is not None
    ]
    text = message + (f" ({', '.join(details)})" if details else "")
    if isinstance(exc, BaseException):
        loop_logger.error("%s", text, exc_info=exc)
    else:
        loop_logger.error("%s", text)


def log_status(text: str) -> None:
    """The SIGUSR1 status dump, through logging so it follows `--log-format`.

    One record on `tether.status` (in JSON, one object whose `event` holds the whole
    text). Where INFO is not logged (`--log-level warning`), the text goes to stderr
    as it is: a status asked for is always shown.
    """
    if status_logger.isEnabledFor(logging.INFO) and status_logger.hasHandlers():
        status_logger.info("%s", text)
        return
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _callback_name(handle: asyncio.Handle) -> str:
    """What a handle calls, by name and place, without the values it was given."""
    callback: Any = getattr(handle, "_callback", None)
    while isinstance(callback, functools.partial):
        callback = callback.func
    name = getattr(callback, "__qualname__", None) or type(callback).__name__
    code = getattr(callback, "__code__", None)
    if code is None:
        return f"{name}()"
    return f"{name}() at {code.co_filename}:{code.co_firstlineno}"
