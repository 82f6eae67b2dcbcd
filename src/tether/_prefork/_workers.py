"""Pre-fork: a master that binds the sockets and supervises N worker processes.

The master is a graph of two blocking services run by the synchronous engine, with no
event loop and no thread: `Sockets` (bind, or adopt systemd's
sockets) and `Workers` (fork, supervise, reload, stop), which depends on it.
Each worker is a forked child that runs the application's graph through the normal
runner (`tether._process._runner.Runner`), serving on the inherited sockets
([`listeners`][tether.listeners]).

Worker and master talk the systemd notify protocol: each worker's `NOTIFY_SOCKET`
names a datagram socket of the master, so the runner's own `READY=1` (sent after the
`started` stage) tells the master the worker serves, and its `WATCHDOG=1` pings,
sent from the worker's event loop, are the heartbeat (a blocked loop stops them).

Longer than 600 lines because `Workers` is one state machine over one set of worker
processes: forking, supervising, reloading them one by one and stopping them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn

from tether._core._errors import TetherError
from tether._core._service import BlockingService
from tether._process._logging import log_status
from tether._process._notify import Notifier, watchdog_interval

from ._figures import MasterFigures, set_master_figures
from ._sockets import Sockets, set_listeners
from ._worker import WorkerMain, die_with_parent

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BootError", "Workers"]

logger = logging.getLogger("tether.prefork")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)
_HEALTHY_LIFE = 10.0
"""A worker that lived this long before it died ends a crash loop (no backoff)."""
_MAX_BACKOFF = 10.0


class BootError(TetherError, RuntimeError):
    """A worker exited, or did not become ready in time, while the master started."""


class _Worker:
    """The master's record of one worker process."""

    __slots__ = (
        "address",
        "born",
        "generation",
        "last_seen",
        "notify",
        "pid",
        "ready_at",
        "replaces",
        "serial",
        "term_at",
        "terms",
    )

    def __init__(self, serial: int, generation: int, notify: socket.socket, address: str) -> None:
        self.serial = serial
        self.generation = generation
        self.notify = notify
        self.address = address
        self.pid = 0
        self.born = time.monotonic()
        self.last_seen = self.born
        self.ready_at: float | None = None
        self.term_at: float | None = None
        self.terms = 0
        self.replaces: _Worker | None = None

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def stopping(self) -> bool:
        return self.term_at is not None

    def __repr__(self) -> str:
        state = "stopping" if self.stopping else "ready" if self.ready else "booting"
        return f"worker {self.serial} (pid {self.pid}, {state})"


class Workers(BlockingService):
    """Forks the workers and keeps the right number of them serving.

    `start` forks `count` workers and returns once every one of them is ready
    (raises `BootError` if one exits or misses `boot_timeout` first, after
    stopping the others). `supervise` then runs until SIGTERM or SIGINT:
    respawning a worker that died (with backoff in a crash loop), killing one whose
    heartbeat stopped for `heartbeat_timeout`, replacing them one at a time on
    SIGHUP, adding one on SIGTTIN and removing one on SIGTTOU; SIGUSR1 prints the
    workers and is forwarded to them (each prints its status tree). `stop` asks every
    worker to stop (SIGTERM), forwards a second stop signal (which makes them stop at
    once) and kills what still runs after `graceful_timeout`.
    """

    name = "Workers"

    def __init__(
        self,
        sockets: Sockets,
        main: WorkerMain,
        *,
        count: int,
        graceful_timeout: float,
        heartbeat_timeout: float,
        boot_timeout: float,
        notifier: Notifier | None = None,
    ) -> None:
        self.sockets = sockets
        self.main = main
        self.desired = count
        self.graceful_timeout = graceful_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.boot_timeout = boot_timeout
        self.notifier = notifier
        self.workers: dict[int, _Worker] = {}
        """Live workers by pid (forked and not yet reaped)."""
        self.generation = 0
        self.failed_generation = -1
        self.serials = 0
        self.failures = 0
        self.next_spawn = 0.0
        self.stop_signals = 0
        self.pending: list[int] = []
        self.selector: selectors.BaseSelector | None = None
        self.wakeup: tuple[socket.socket, socket.socket] | None = None
        self.directory: Path | None = None
        self.previous: dict[int, object] = {}
        self.previous_wakeup = -1
        self.master_pid = os.getpid()
        self.exits: list[tuple[int, int]] = []
        """(pid, exit status) of every worker reaped, for the report and the tests."""
        self.boot_failures: list[tuple[int, int]] = []
        """(pid, exit status) of the workers that exited before they were ready."""
        self.watchdog = watchdog_interval()
        self.last_watchdog = 0.0
        self.announced = False
        """Whether "every worker is ready" was said (the log line and READY=1), once."""
        self.started = False
        """The `started` stage ran: readiness may be announced from then on."""
        self.respawns = 0
        """Workers forked again after one died or was killed (heartbeat, boot timeout)."""
        self.figures: MasterFigures | None = None
        """What the workers' `/metrics` report of this master (shared memory)."""

    @property
    def dependencies(self) -> list[Sockets]:
        """The sockets: bound before the first fork, closed after the last worker."""
        return [self.sockets]

    @property
    def graceful_shutdown_timeout(self) -> float:
        """The workers' graceful timeout, and room to kill and reap what outlived it."""
        return self.graceful_timeout + 10

    # ------------------------------------------------------------ lifecycle hooks

    def start(self) -> None:
        """Install the signal handlers, fork the workers, wait until all are ready."""
        import tempfile  # noqa: PLC0415 - only a master needs it
        from pathlib import Path  # noqa: PLC0415 - nor this: `import tether` stays cheap

        self.master_pid = os.getpid()
        self.directory = Path(tempfile.mkdtemp(prefix="tether-master-"))
        self.selector = selectors.DefaultSelector()
        self.wakeup = socket.socketpair()
        for end in self.wakeup:
            end.setblocking(False)  # noqa: FBT003 - the socket API
        self.selector.register(self.wakeup[0], selectors.EVENT_READ, None)
        self.figures = MasterFigures()
        self._install_signals()
        try:
            for _ in range(self.desired):
                self._spawn()
            problem = self._wait_booted()
        except BaseException:
            self._abandon()
            raise
        if problem is not None:
            self._abandon()
            raise BootError(f"{problem}; nothing serves: the master stops.")
        if self._stop_requested():
            booting = sum(1 for w in self.workers.values() if not w.ready)
            logger.info(
                "stop requested while %d of %d worker(s) still booted: stopped before every "
                "worker was ready",
                booting,
                len(self.workers),
            )

    def _announce_ready(self) -> None:
        """Say every worker is ready (log, `READY=1`), once, and only when it is true.

        Not while stopping, and not while fewer workers than wanted are ready: one that
        was ready and died during the boot wait is respawned first.
        """
        if self.announced or not self.started or self._stop_requested():
            return
        active = self._active()
        if len(active) < self.desired or not all(w.ready for w in active):
            return
        self.announced = True
        logger.info("%d worker(s) ready", len(active))
        if self.notifier is not None:
            self.notifier.ready(f"{len(active)} workers ready")

    def _abandon(self) -> None:
        """A failed start: kill what was forked, undo the rest (`stop` is not called)."""
        self._terminate_all(graceful=False)
        self._teardown()

    def _wait_booted(self) -> str | None:
        """Wait until every worker is ready (None) or one failed (what happened)."""
        deadline = time.monotonic() + self.boot_timeout
        while not self._stop_requested():
            if self.boot_failures:
                # One that was ready and died since is respawned by supervise().
                status = _status_text(self.boot_failures[0][1])
                return f"a worker exited before it was ready ({status}; its error is above)"
            booting = [w for w in self.workers.values() if not w.ready]
            if not booting:
                return None
            if time.monotonic() >= deadline:
                return (
                    f"{len(booting)} worker(s) not ready after boot_timeout={self.boot_timeout:g}s"
                )
            self._poll(deadline)
        return None

    def on_started(self) -> None:
        """Every worker serves: tell systemd the service is ready (only if it is true)."""
        self.started = True
        self._announce_ready()

    def stop(self) -> None:
        """Stop every worker gracefully; kill what outlives `graceful_timeout`."""
        try:
            if self.notifier is not None:
                self.notifier.stopping(f"stopping {len(self.workers)} workers")
            self._terminate_all(graceful=True)
        finally:
            self._teardown()

    # ------------------------------------------------------------ supervising

    def supervise(self) -> None:
        """Keep the workers serving until SIGTERM or SIGINT arrives."""
        while not self._stop_requested():
            self._poll(self._next_deadline())
            if self._stop_requested():
                break
            self._check_heartbeats()
            self._check_stragglers()
            self._reload_step()
            self._scale()

    def _stop_requested(self) -> bool:
        return self.stop_signals > 0

    def _next_deadline(self) -> float:
        now = time.monotonic()
        candidates = [now + 1.0]
        if self.next_spawn > now:
            candidates.append(self.next_spawn)
        for worker in self.workers.values():
            if worker.term_at is not None:
                candidates.append(worker.term_at + self.graceful_timeout)
            elif worker.ready_at is not None:
                candidates.append(worker.last_seen + self.heartbeat_timeout)
            else:
                candidates.append(worker.born + self.boot_timeout)
        return min(candidates)

    def _active(self) -> list[_Worker]:
        return [w for w in self.workers.values() if not w.stopping]

    def _scale(self) -> None:
        active = self._active()
        booting_replacement = sum(1 for w in active if w.replaces is not None and not w.ready)
        serving = len(active) - booting_replacement
        if serving < self.desired:
            now = time.monotonic()
            if now >= self.next_spawn:
                self._spawn()
        elif serving > self.desired:
            extra = sorted((w for w in active if w.replaces is None), key=lambda w: w.serial)
            for worker in extra[: serving - self.desired]:
                logger.info("stopping %s: %d worker(s) wanted", worker, self.desired)
                self._terminate(worker)

    def _reload_step(self) -> None:
        if self.failed_generation == self.generation:
            return
        active = self._active()
        if any(w.replaces is not None and not w.ready for w in active):
            return  # a replacement is booting
        old = sorted((w for w in active if w.generation < self.generation), key=lambda w: w.serial)
        if not old:
            return
        replacement = self._spawn()
        replacement.replaces = old[0]
        logger.info("reload: %s boots to replace %s", replacement, old[0])

    def _reload_finished(self) -> None:
        active = self._active()
        if any(w.generation < self.generation for w in active):
            return
        logger.info("reload complete: %d worker(s) serving the new code", len(active))
        if self.notifier is not None:
            self.notifier.ready(f"{len(active)} workers ready (reloaded)")

    def _reload_failed(self, worker: _Worker, why: str) -> None:
        self.failed_generation = self.generation
        worker.replaces = None
        logger.error(
            "reload failed: the new %s did not boot: %s; the old workers keep serving. "
            "Fix the code and send SIGHUP again.",
            worker,
            why,
        )
        if self.notifier is not None:
            self.notifier.ready("reload failed: old workers keep serving (see the log)")

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.stopping:
                continue
            if worker.ready_at is None:
                if now - worker.born > self.boot_timeout:
                    logger.error(
                        "%s not ready after boot_timeout=%gs: killing it",
                        worker,
                        self.boot_timeout,
                    )
                    if worker.replaces is not None:
                        self._reload_failed(worker, "it was not ready in time")
                    else:
                        self.respawns += 1
                    self._kill(worker)
            elif now - worker.last_seen > self.heartbeat_timeout:
                logger.error(
                    "%s sent no heartbeat for %.1fs (its event loop is blocked?): "
                    "killing it, a new one replaces it",
                    worker,
                    now - worker.last_seen,
                )
                self.respawns += 1
                self._kill(worker)

    def _check_stragglers(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.term_at is not None and now - worker.term_at > self.graceful_timeout:
                logger.warning(
                    "%s still running %gs after SIGTERM (graceful_timeout): killing it",
                    worker,
                    self.graceful_timeout,
                )
                self._kill(worker)

    # ------------------------------------------------------------ events

    def _poll(self, deadline: float) -> None:
        """Wait for a signal, a worker's message or `deadline`; handle what came."""
        assert self.selector is not None
        self._ping_systemd()
        timeout = max(0.0, deadline - time.monotonic())
        if self.watchdog is not None:
            timeout = min(timeout, self.watchdog)
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                assert self.wakeup is not None
                with contextlib.suppress(OSError):
                    while self.wakeup[0].recv(512):
                        pass
            else:
                self._read_notify(key.data)
        self._handle_signals()
        self._reap()
        self._publish_figures()

    def _publish_figures(self) -> None:
        """Write the figures the workers' `/metrics` read."""
        if self.figures is None:
            return
        serving = sum(1 for w in self.workers.values() if w.ready and not w.stopping)
        self.figures.write(
            desired=self.desired,
            serving=serving,
            respawns=self.respawns,
            reloads=self.generation,
        )

    def _ping_systemd(self) -> None:
        if self.notifier is None or self.watchdog is None:
            return
        now = time.monotonic()
        if now - self.last_watchdog >= self.watchdog:
            self.last_watchdog = now
            self.notifier.send("WATCHDOG=1")

    def _read_notify(self, worker: _Worker) -> None:
        while True:
            try:
                data = worker.notify.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            worker.last_seen = time.monotonic()
            fields = data.decode("utf-8", "replace").split("\n")
            if "READY=1" in fields and worker.ready_at is None and worker.pid in self.workers:
                self._on_ready(worker)

    def _on_ready(self, worker: _Worker) -> None:
        worker.ready_at = time.monotonic()
        # Its server may have called listen() again with a backlog of its own (aiohttp
        # 128, asyncio 100) on the shared socket: the one bound (or systemd's) holds.
        for listener in self.sockets.listeners:
            listener.keep_backlog()
        logger.info("%s ready in %.0f ms", worker, (worker.ready_at - worker.born) * 1000)
        old, worker.replaces = worker.replaces, None
        if old is not None and old.pid in self.workers and not old.stopping:
            logger.info("reload: stopping %s, replaced by %s", old, worker)
            self._terminate(old)
        if old is not None:
            self._reload_finished()
        self._announce_ready()  # the first time only: a worker respawned during the boot

    def _handle_signals(self) -> None:
        pending, self.pending = self.pending, []
        for signum in pending:
            if signum in _STOP_SIGNALS:
                self.stop_signals += 1
                name = signal.Signals(signum).name
                if self.stop_signals == 1:
                    logger.info("%s received: stopping the workers gracefully", name)
                else:
                    logger.warning("%s received again: the workers stop at once", name)
                    for worker in self.workers.values():
                        self._signal(worker, signal.SIGTERM)
            elif signum == signal.SIGHUP:
                if self._stop_requested():
                    continue
                self.generation += 1
                logger.info(
                    "SIGHUP received: replacing %d worker(s) one at a time",
                    len(self._active()),
                )
                if self.notifier is not None:
                    self.notifier.reloading()
            elif signum == signal.SIGUSR1:
                self._print_status()
            elif signum == signal.SIGTTIN:
                self.desired += 1
                logger.info("SIGTTIN received: %d worker(s) wanted", self.desired)
            elif signum == signal.SIGTTOU:
                if self.desired > 1:
                    self.desired -= 1
                    logger.info("SIGTTOU received: %d worker(s) wanted", self.desired)
                else:
                    logger.info("SIGTTOU received: keeping the last worker")

    def _print_status(self) -> None:
        """SIGUSR1: the workers, one line each, then each worker prints its own tree."""
        now = time.monotonic()
        header = (
            f"tether status: master pid {os.getpid()}, {len(self._active())} of "
            f"{self.desired} worker(s) serving, generation {self.generation}"
        )
        lines = [header]
        lines.extend(
            f"  {worker}: up {now - worker.born:.1f}s, generation {worker.generation}, "
            f"last heartbeat {now - worker.last_seen:.1f}s ago"
            for worker in sorted(self.workers.values(), key=lambda w: w.serial)
        )
        log_status("\n".join(lines))
        for worker in self.workers.values():
            self._signal(worker, signal.SIGUSR1)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self.exits.append((pid, status))
            if worker.ready_at is None:
                self.boot_failures.append((pid, status))
            self._forget(worker)
            self._on_exit(worker, status)

    def _on_exit(self, worker: _Worker, status: int) -> None:
        now = time.monotonic()
        text = _status_text(status)
        if worker.stopping:
            logger.info("%s exited (%s)", worker, text)
            return
        if self._stop_requested():
            logger.info("%s exited (%s)", worker, text)
            return
        if worker.ready_at is None and worker.replaces is not None:
            self._reload_failed(worker, f"it exited before it was ready ({text})")
            return
        lived = now - worker.born
        self.respawns += 1
        self.failures = 1 if lived >= _HEALTHY_LIFE else self.failures + 1
        delay = 0.0 if self.failures <= 1 else min(0.1 * 2 ** (self.failures - 2), _MAX_BACKOFF)
        self.next_spawn = now + delay
        if delay:
            logger.error(
                "%s died (%s) after %.1fs; %d failures in a row: respawning in %.1fs",
                worker,
                text,
                lived,
                self.failures,
                delay,
            )
        else:
            logger.error("%s died (%s); respawning it", worker, text)

    # ------------------------------------------------------------ processes

    def _spawn(self) -> _Worker:
        assert self.directory is not None
        assert self.selector is not None
        self.serials += 1
        serial = self.serials
        address = str(self.directory / f"w{serial}")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(address)
        notify.setblocking(False)  # noqa: FBT003 - the socket API
        worker = _Worker(serial, self.generation, notify, address)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child never returns (coverage of forks)
                self._become_worker(worker, blocked)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        worker.pid = pid
        self.workers[pid] = worker
        self.selector.register(notify, selectors.EVENT_READ, worker)
        logger.info("forked %s", worker)
        return worker

    def _become_worker(self, worker: _Worker, mask: Iterable[int]) -> NoReturn:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in _HANDLED:
                signal.signal(signum, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group: the master forwards it as SIGTERM.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            die_with_parent(self.master_pid)
            if self.selector is not None:
                self.selector.close()
            if self.wakeup is not None:
                for end in self.wakeup:
                    end.close()
            for other in self.workers.values():
                other.notify.close()
            worker.notify.close()
            if self.notifier is not None:
                self.notifier.close()  # only the master talks to systemd
            os.environ["NOTIFY_SOCKET"] = worker.address
            os.environ["WATCHDOG_USEC"] = str(max(1, int(self.heartbeat_timeout * 500_000)))
            os.environ["WATCHDOG_PID"] = str(os.getpid())
            os.environ["TETHER_WORKER"] = str(worker.serial)
            set_listeners(self.sockets.listeners)
            set_master_figures(self.figures, worker.serial)
            code = self.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logger.exception("worker %d failed", worker.serial)
            code = 3
        finally:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _signal(self, worker: _Worker, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)

    def _terminate(self, worker: _Worker) -> None:
        if worker.term_at is None:
            worker.term_at = time.monotonic()
        worker.terms += 1
        self._signal(worker, signal.SIGTERM)

    def _kill(self, worker: _Worker) -> None:
        if worker.term_at is None:
            worker.term_at = time.monotonic()
        self._signal(worker, signal.SIGKILL)

    def _terminate_all(self, *, graceful: bool) -> None:
        if not self.workers:
            return
        told = 0
        for worker in list(self.workers.values()):
            if graceful:
                if worker.terms == 0:
                    self._terminate(worker)
                    told += 1
            else:
                self._kill(worker)
        if told:
            logger.info("SIGTERM sent to %d worker(s): each drains and exits", told)
        deadline = time.monotonic() + (self.graceful_timeout if graceful else 5.0)
        while self.workers and time.monotonic() < deadline:
            self._poll(deadline)
        if self.workers:
            logger.warning(
                "%d worker(s) still running after graceful_timeout=%gs: killing them",
                len(self.workers),
                self.graceful_timeout,
            )
            for worker in list(self.workers.values()):
                self._kill(worker)
            end = time.monotonic() + 5.0
            while self.workers and time.monotonic() < end:
                self._poll(end)

    def _forget(self, worker: _Worker) -> None:
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.notify)
        worker.notify.close()
        with contextlib.suppress(OSError):
            os.unlink(worker.address)  # noqa: PTH108 - no pathlib: `import tether` stays cheap

    # ------------------------------------------------------------ signals

    def _install_signals(self) -> None:
        assert self.wakeup is not None
        for signum in _HANDLED:
            self.previous[signum] = signal.signal(signum, self._on_signal)
        self.previous_wakeup = signal.set_wakeup_fd(
            self.wakeup[1].fileno(), warn_on_full_buffer=False
        )

    def _on_signal(self, signum: int, frame: object) -> None:
        del frame
        if signum != signal.SIGCHLD:
            self.pending.append(signum)

    def _teardown(self) -> None:
        for worker in list(self.workers.values()):
            self._forget(worker)
        if self.previous:
            signal.set_wakeup_fd(self.previous_wakeup)
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self.previous.clear()
        if self.selector is not None:
            self.selector.close()
            self.selector = None
        if self.wakeup is not None:
            for end in self.wakeup:
                end.close()
            self.wakeup = None
        if self.figures is not None:
            self.figures.close()
            self.figures = None
        if self.directory is not None:
            with contextlib.suppress(OSError):
                for leftover in self.directory.iterdir():
                    leftover.unlink()
                self.directory.rmdir()
            self.directory = None


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = str(os.WTERMSIG(status))
        return f"killed by {name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
