"""`tether.run`: a graph of services as a well-behaved process.

The runner owns what a process has only one of: the event loop, the signal handlers,
the logging setup, the systemd connection and the exit code. It runs the phases in
order (`init` before the loop exists, `start`, waiting, `stop`, `exit` after
the loop closed) and turns whatever happens into one of a few documented exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

from tether._core._base import ServiceBase, record
from tether._core._engine import reload, run_exit, run_init, start_root, stop_root
from tether._core._engine import wait as wait_for_stop
from tether._core._events import subscribe
from tether._core._records import display_name
from tether._core._stages import RELOAD
from tether._supervision._thread import use_loop_factory

from ._blocking import BlockingDetector, check_blocking_timeout
from ._deadline import FORCED_EXIT, Deadline, culprits, force_exit
from ._logging import (
    LOG_FORMATS,
    LifecycleLogger,
    LogFormat,
    configured,
    log_loop_exception,
    log_status,
    parse_level,
)
from ._loops import LOOPS, LoopChoice, loop_factory, wakes_itself
from ._notify import Notifier, Progress, ping_watchdog, watchdog_interval
from ._observe import observing
from ._picture import graph_records, status_tree
from ._signals import SignalHandlers, SignalWakeup, wake_loop_on_signals

if TYPE_CHECKING:
    from tether._inject._container import Container

__all__ = ["LOOPS", "ExitCode", "LoopChoice", "RunOptions", "Runner", "loop_factory", "run"]

logger = logging.getLogger("tether.runner")

DEFAULT_SHUTDOWN_TIMEOUT = 30.0


class ExitCode(enum.IntEnum):
    """How a process run by `run` (or the `tether` command) ended.

    | code | meaning |
    |---|---|
    | 0 | clean stop: the root stopped on its own, or on a signal, gracefully |
    | 1 | crash while running: a background task raised, or stopping failed |
    | 2 | usage error of the `tether` command (an option, an extra, `module:attr`) |
    | 3 | failure during startup: `init` or `start` raised, or an invalid graph |
    | 70 | forced exit: a second signal, or the shutdown deadline passed |

    The runner page says which signals and options each row covers.
    """

    OK = 0
    CRASHED = 1
    USAGE = 2
    STARTUP_FAILED = 3
    FORCED = FORCED_EXIT


class RunOptions(TypedDict, total=False):
    """The keyword options of `run`, for `Service.launch(**options)`."""

    loop: LoopChoice
    shutdown_timeout: float
    log_level: str | int
    log_format: LogFormat
    repl: bool | Mapping[str, Any]
    container: Container | None
    blocking_timeout: float | None


class _Phase(enum.Enum):
    INIT = "initialising"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXIT = "exiting"


def _check_service(service: object) -> ServiceBase:
    if isinstance(service, ServiceBase):
        return service
    if isinstance(service, type) and issubclass(service, ServiceBase):
        name = service.__qualname__
        raise TypeError(
            f"tether.run() takes a service instance, got the class {name}; "
            f"did you mean tether.run({name}())?"
        )
    if asyncio.iscoroutine(service):
        service.close()
        raise TypeError(
            "tether.run() takes a service, got a coroutine; to run a coroutine use "
            "asyncio.run(), to run a graph pass its root service."
        )
    raise TypeError(f"tether.run() takes a service, got {service!r} ({type(service).__name__}).")


def check_timeout(value: object) -> float:
    """`shutdown_timeout` as seconds; ValueError naming what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"shutdown_timeout must be a positive number of seconds, got {value!r}.")
    if math.isinf(value):
        raise ValueError(
            "shutdown_timeout must be finite: it is what ends a process whose stop "
            "hangs. Give it a generous number of seconds instead of math.inf."
        )
    return float(value)


class Runner:
    """One run of a graph as a process; `run` is its public face."""

    def __init__(
        self,
        service: ServiceBase,
        *,
        loop: LoopChoice = "auto",
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        log_level: str | int = "info",
        log_format: LogFormat = "auto",
        repl: bool | Mapping[str, Any] = False,
        container: Container | None = None,
        blocking_timeout: float | None = None,
    ) -> None:
        self.service = _check_service(service)
        self.container = container
        self.factory = loop_factory(loop)
        self.shutdown_timeout = check_timeout(shutdown_timeout)
        self.blocking_timeout = check_blocking_timeout(blocking_timeout)
        self.detector: BlockingDetector | None = None
        parse_level(log_level)
        if log_format not in LOG_FORMATS:
            raise ValueError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}."
            )
        self.log_level = log_level
        self.log_format = log_format
        self.repl = repl is not False
        self.repl_names = repl if isinstance(repl, Mapping) else None
        self.name = display_name(self.service)
        self.phase = _Phase.INIT
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wakeup: SignalWakeup | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self.start_task: asyncio.Task[None] | None = None
        self.reload_task: asyncio.Task[None] | None = None
        self.reload_again = False
        self.stop_signal: signal.Signals | None = None
        self.stop_signal_handled = False
        self.shutdown_reason: str | None = None
        self.notifier: Notifier | None = None
        self.progress: Progress | None = None
        self.console_left_running = False
        self.signals = SignalHandlers(
            on_stop=self._on_stop_signal,
            on_force=self._on_force_signal,
            on_reload=self._on_reload_signal,
            on_status=self._on_status_signal,
            hangup_stops=self._cannot_reload,
        )
        self.deadline: Deadline | None = None

    # ------------------------------------------------------------------ phases

    def execute(self) -> int:
        """Run every phase; return the exit code (a forced exit never returns)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "tether.run() starts its own event loop and cannot be called from "
                "async code; there, use `await service.run()` or `async with service:`."
            )
        with configured(self.log_level, self.log_format):
            self.deadline = Deadline(self.shutdown_timeout, self._describe)
            self.notifier = Notifier.from_environment()
            self.signals.install()
            try:
                # The log, what /metrics reports and the spans: all from the events.
                with subscribe(LifecycleLogger()), observing():
                    code = self._phases()
            finally:
                self.signals.restore()
                self.deadline.disarm()
                if self.notifier is not None:
                    self.notifier.close()
            if self.detector is not None and self.detector.count:
                logger.info("%s: %s", self.name, self.detector.summary())
            logger.info("%s: exit code %d (%s)", self.name, code, ExitCode(code).name)
        return code

    def _phases(self) -> int:
        try:
            run_init(self.service)
        except Exception as exc:
            logger.exception(
                "%s: the init stage failed; nothing was started", self.name, exc_info=exc
            )
            return ExitCode.STARTUP_FAILED
        code = self._loop_phase()
        self.phase = _Phase.EXIT
        try:
            run_exit(self.service)
        except Exception as exc:
            logger.exception("%s: the exit stage failed", self.name, exc_info=exc)
            code = code or ExitCode.CRASHED
        return code

    def _loop_phase(self) -> int:
        runner = asyncio.Runner(loop_factory=self.factory)
        try:
            loop = runner.get_loop()
        except Exception as exc:
            runner.close()
            logger.exception(
                "%s: creating the event loop failed; nothing was started", self.name, exc_info=exc
            )
            return ExitCode.STARTUP_FAILED
        try:
            with runner:
                loop.set_exception_handler(log_loop_exception)
                self.loop = loop
                if not wakes_itself(loop):
                    self.wakeup = wake_loop_on_signals(loop)
                code = runner.run(self._serve())
                # Leaving the Runner cancels leftover tasks, shuts down async generators
                # and the default executor: all of it under the shutdown deadline.
        finally:
            if self.wakeup is not None:
                self.wakeup.close()
                self.wakeup = None
        self.loop = None
        return code

    async def _serve(self) -> int:
        loop = asyncio.get_running_loop()
        if self.wakeup is not None:
            self.wakeup.reclaim()  # from a loop that set its own as it began to run
        use_loop_factory(self.factory)  # a ServiceThread makes its loop the same way
        self.main_task = asyncio.current_task()
        if self.main_task is not None:
            self.main_task.set_name("tether.runner")
        watchdog: asyncio.Task[None] | None = None
        notifier = self.notifier
        if notifier is not None:
            self.progress = Progress(notifier, loop)
            interval = watchdog_interval()
            if interval is not None:
                watchdog = loop.create_task(
                    ping_watchdog(notifier, interval), name="tether.systemd-watchdog"
                )
        progress = subscribe(self.progress) if self.progress else contextlib.nullcontext()
        if self.blocking_timeout is not None:
            self.detector = BlockingDetector(
                self.service,
                self.blocking_timeout,
                notifier=notifier,
                phase=lambda: self.phase.value,
            )
            self.detector.start()
        try:
            with progress:
                if self.container is None:
                    return await self._lifetime(loop)
                # What the container built (generator providers) is released after the
                # whole graph stopped, while the loop still runs.
                async with self.container:
                    return await self._lifetime(loop)
        finally:
            if self.detector is not None:
                self.detector.close()
            if self.progress is not None:
                self.progress.close()
            for task in (watchdog, self.reload_task):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _lifetime(self, loop: asyncio.AbstractEventLoop) -> int:
        service, name = self.service, self.name
        if self.stop_signal is not None:
            logger.info("%s: %s arrived during init; not starting", name, self.stop_signal.name)
            return ExitCode.OK
        self.phase = _Phase.STARTING
        kind = type(loop)
        loop_name = kind.__module__.split(".")[0]
        if loop_name not in ("asyncio", "uvloop"):
            loop_name = f"{kind.__module__}.{kind.__qualname__}"
        logger.info("%s: starting (pid %d, %s event loop)", name, os.getpid(), loop_name)
        if self.notifier is not None:
            self.notifier.status(f"starting {name}")
        began = time.perf_counter()
        start = self.start_task = loop.create_task(start_root(service), name="tether.start")
        try:
            await start
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if start.cancelled() and self._signalled() and not (current and current.cancelling()):
                logger.info(
                    "%s: start interrupted by %s; what had started was stopped",
                    name,
                    self._signal_name(),
                )
                return ExitCode.OK
            raise
        except Exception as exc:
            self._begin_shutdown("start failed")
            logger.exception("%s failed to start; what had started was stopped", name, exc_info=exc)
            return ExitCode.STARTUP_FAILED
        finally:
            self.start_task = None
            if self.progress is not None:
                self.progress.starting = False
        count = len(graph_records(service))
        logger.info(
            "%s running: %d services started in %.1f ms",
            name,
            count,
            (time.perf_counter() - began) * 1000,
        )
        arrived = self._stop_signal()
        if arrived is None:
            self.phase = _Phase.RUNNING
            if self.notifier is not None:
                self.notifier.ready(f"running: {name} with {count} services")
        else:
            # It arrived as the start finished, too late to cancel it: stop now.
            self._stop_in_loop(arrived)
            service.request_stop()

        body_error: BaseException | None = None
        try:
            if self.repl:
                await self._interact()
            else:
                await wait_for_stop(record(service))
        except Exception as exc:
            body_error = exc
            self._begin_shutdown("crashed")
            logger.exception("%s crashed; stopping the graph", name, exc_info=exc)
        self._begin_shutdown(self.shutdown_reason or "stop requested")
        began = time.perf_counter()
        try:
            await stop_root(service, body_error)
        except Exception as exc:
            logger.exception("%s: errors while stopping", name, exc_info=exc)
            return ExitCode.CRASHED
        if body_error is not None:
            return ExitCode.CRASHED
        logger.info("%s stopped cleanly in %.1f ms", name, (time.perf_counter() - began) * 1000)
        return ExitCode.OK

    def _begin_shutdown(self, reason: str) -> None:
        if self.phase is _Phase.STOPPING:
            return
        self.phase = _Phase.STOPPING
        self.shutdown_reason = reason
        if self.deadline is not None:
            self.deadline.arm(reason)
        if self.notifier is not None:
            self.notifier.stopping(f"stopping: {reason}")
        logger.info(
            "%s: stopping (%s); shutdown deadline %gs", self.name, reason, self.shutdown_timeout
        )

    async def _interact(self) -> None:
        from ._repl import Console  # noqa: PLC0415 - the REPL is loaded only when asked for

        console = Console(self.service, asyncio.get_running_loop(), self.repl_names)
        self.signals.intercept_interrupt = console.interrupt
        try:
            await console.run_until_left(
                wait_for_stop(record(self.service)),
                lambda: self.shutdown_reason or "a stop was requested",
            )
        finally:
            self.signals.intercept_interrupt = None
            # A console still waiting in input() (the graph stopped or crashed under
            # it) cannot be interrupted; run() then ends the process without it.
            self.console_left_running = console.waiting()

    # ------------------------------------------------------------------ signals
    # Signal handlers run in the main thread between bytecodes, possibly while the loop
    # is mid-step: they only set flags, arm the deadline and hand work to the loop.

    def _to_loop(self, callback: Callable[..., object], *args: Any) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _signalled(self) -> bool:
        """Whether a stop signal arrived (read through a call: handlers change it)."""
        return self.stop_signal is not None

    def _stop_signal(self) -> signal.Signals | None:
        return self.stop_signal

    def _signal_name(self) -> str:
        sig = self.stop_signal
        return sig.name if sig is not None else "a signal"

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self.stop_signal = sig
        if self.deadline is not None:
            self.deadline.arm(f"{sig.name} received")
        self._to_loop(self._stop_in_loop, sig)

    def _stop_in_loop(self, sig: signal.Signals) -> None:
        if self.stop_signal_handled or self.phase in (_Phase.STOPPING, _Phase.EXIT):
            return
        self.stop_signal_handled = True
        if sig.name == "SIGHUP":
            logger.info("SIGHUP received and no service in the graph reloads (no reload hook)")
        logger.info("%s received: stopping gracefully (send it again to force)", sig.name)
        if self.phase is _Phase.STARTING:
            self._begin_shutdown(f"{sig.name} received")
            if self.start_task is not None and not self.start_task.done():
                self.start_task.cancel()
        elif self.phase is _Phase.RUNNING:
            self._begin_shutdown(f"{sig.name} received")
            self.service.request_stop()

    def _cannot_reload(self) -> bool:
        """Whether no service in the graph has a hook in the reload phase (a HUP stops)."""
        return not any(
            stage._phase is RELOAD._phase
            for rec in graph_records(self.service)
            for stage in rec.info.hooks
        )

    def _on_force_signal(self, sig: signal.Signals, frame: types.FrameType | None) -> NoReturn:
        loop = self.loop
        force_exit(f"second {sig.name} received", lambda: culprits(self.service, loop, frame))

    def _describe(self) -> str:
        return culprits(self.service, self.loop)

    def _on_reload_signal(self, sig: signal.Signals) -> None:
        self._to_loop(self._reload_in_loop, sig)

    def _reload_in_loop(self, sig: signal.Signals) -> None:
        if self.phase is not _Phase.RUNNING:
            logger.info("%s ignored: %s is %s", sig.name, self.name, self.phase.value)
            return
        if self.reload_task is not None and not self.reload_task.done():
            self.reload_again = True
            return
        loop = asyncio.get_running_loop()
        self.reload_task = loop.create_task(self._reload(sig), name="tether.reload")

    async def _reload(self, sig: signal.Signals) -> None:
        while True:
            self.reload_again = False
            if self.notifier is not None:
                self.notifier.reloading()
            logger.info("%s received: reloading %s", sig.name, self.name)
            began = time.perf_counter()
            try:
                await reload(self.service)
            except Exception as exc:
                logger.exception(
                    "%s: reload failed; the services keep running", self.name, exc_info=exc
                )
                outcome = "running: the last reload failed (see the log)"
            else:
                logger.info(
                    "%s reloaded in %.1f ms", self.name, (time.perf_counter() - began) * 1000
                )
                outcome = f"running: {self.name} reloaded"
            if self.notifier is not None:
                self.notifier.ready(outcome)
            if not self.reload_again or self.phase is not _Phase.RUNNING:
                return

    def _on_status_signal(self, sig: signal.Signals) -> None:
        del sig
        self._to_loop(self._print_status)

    def _print_status(self) -> None:
        header = f"tether status: {self.name} is {self.phase.value} (pid {os.getpid()})"
        if self.detector is not None:
            header += "\n" + self.detector.status_line()
        try:
            tree = status_tree(self.service)
        except Exception as exc:
            logger.exception("could not draw the status tree")
            tree = f"(status unavailable: {exc!r})"
        log_status(f"{header}\n{tree}")


def run(
    service: ServiceBase,
    *,
    loop: LoopChoice = "auto",
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    log_level: str | int = "info",
    log_format: LogFormat = "auto",
    repl: bool | Mapping[str, Any] = False,
    container: Container | None = None,
    blocking_timeout: float | None = None,
) -> NoReturn:
    """Run `service` and its graph as this process, then exit with a documented code.

    The phases, in order: the `init` stage (sync, before any event loop exists); the
    event loop (`loop="auto"` picks uvloop when installed, `"asyncio"` or
    `"uvloop"` force one; any other loop through its factory: a callable such as
    `rloop.new_event_loop`, or a string `"module:attr"` naming one; a
    [`ServiceThread`][tether.ServiceThread] makes its loop the same way); the `start`
    and `started` stages; running until the
    root stops, crashes or a signal arrives; the `stopping` and `stop` stages; the
    loop closed; the `exit` stage (sync). Then it raises `SystemExit` with an
    [`ExitCode`][tether.ExitCode]: 0 clean stop, 1 crash while running, 3 failure during startup,
    70 forced exit.

    Signals (installed in the main thread, over default handlers only, restored
    afterwards): SIGINT and SIGTERM stop gracefully, a second one forces the exit at
    once; SIGHUP runs the `reload` stage (a failing reload is logged and the process
    keeps running), or, when no service in the graph has a reload hook, stops
    gracefully as SIGTERM does (a hang-up ends a process that cannot reload); SIGUSR1
    prints the live status tree to stderr. Once stopping has begun,
    `shutdown_timeout` seconds later the process ends with code 70 whatever still
    runs (a task that swallows cancellation, a hook that blocks), naming it.

    Logging is set up unless you configured it already (`log_level`; `log_format`
    `auto`, `plain`, `console` or `json`); every lifecycle event is logged, and the
    durations of starts and stops are recorded for a `Health`'s `/metrics`; with
    OpenTelemetry's API installed, each start, stop and reload is traced (see
    [`tether.ext.otel`][tether.ext.otel]).
    Under systemd (`NOTIFY_SOCKET`) readiness, reloads, stopping, status and
    watchdog pings are reported. With `repl=True` an asyncio REPL replaces the
    waiting: the services are bound by name, top-level `await` works, and leaving
    the REPL stops the graph; `repl=globals()` (any mapping) binds those names too,
    as `tether repl module:attr` binds the module's. When the graph stops under the
    prompt (a signal, a service's own stop, a crash) the REPL says why as it leaves.
    With a `container` (see [`Container`][tether.Container]), the resources it built are
    released once the whole graph has stopped. With `blocking_timeout` (seconds), a
    thread watches the event loop: when the loop does not turn for longer than that
    (code that blocks it: a `time.sleep`, a long computation, a blocking call), it
    logs the stack of that code and names the task and the service it belongs to,
    counts it in [`status`][tether.status] (`loop_blocks`) and the status tree, and
    says so in systemd's `STATUS=`; off by default (its cost is measured in the how-to
    "Finding what blocks the event loop"):

    ```python
    if __name__ == "__main__":
        tether.run(Api(Database()))
        # or, wired by types:
        tether.run(container.root(Api), container=container)
    ```
    """
    runner = Runner(
        service,
        loop=loop,
        shutdown_timeout=shutdown_timeout,
        log_level=log_level,
        log_format=log_format,
        repl=repl,
        container=container,
        blocking_timeout=blocking_timeout,
    )
    from ._pid1 import become_init_when_pid1  # noqa: PLC0415 - a container's PID 1 only

    become_init_when_pid1()
    code = runner.execute()
    if runner.console_left_running:
        # The REPL thread still waits in input(); it cannot be interrupted, and
        # interpreter shutdown would wait on it. Flush and end here.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    raise SystemExit(code)
