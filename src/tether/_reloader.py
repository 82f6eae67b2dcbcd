"""`tether run --reload`: restart the application when a source file changes (development).

This process never imports the application. It holds the listening sockets (those it
binds for `--bind`, and those systemd passed it), watches the source directories with
watchfiles (`pip install 'tether[reload]'`), and runs the same `tether run` command
line in a child process that adopts those sockets (`hand_over`). On a change it stops
the child gracefully, as SIGTERM does, waits for it to exit, and starts a new one:
the sockets stay open in between, so a connection made meanwhile waits in their backlog
instead of being refused. Signals are forwarded to the child: SIGINT and SIGTERM stop
both, SIGHUP and SIGUSR1 reach the application as they would without `--reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._prefork._sockets import Listener, Sockets, hand_over, systemd_listeners
from ._process._logging import configured
from ._process._runner import DEFAULT_SHUTDOWN_TIMEOUT

if TYPE_CHECKING:
    import argparse

    from watchfiles import Change

__all__ = ["Reloader", "reload_main"]

logger = logging.getLogger("tether.reload")

_FORWARDED = (signal.SIGHUP, signal.SIGUSR1)
_STOPS = (signal.SIGINT, signal.SIGTERM)
_KILL_MARGIN = 5.0
"""Seconds past the child's own shutdown deadline before it is killed."""
_SHOWN = 3


def _shown(paths: Iterable[str], directories: Sequence[Path]) -> str:
    """`app.py, web/routes.py and 2 more`: each relative to the directory watched."""
    names = []
    for path in sorted(set(paths)):
        shown = path
        for directory in directories:
            with contextlib.suppress(ValueError):
                shown = str(Path(path).relative_to(directory))
                break
        names.append(shown)
    text = ", ".join(names[:_SHOWN])
    return text + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


class Reloader:
    """Runs `tether ARGV` in a child and starts it again after each change of a source.

    `directories` are watched for changes of Python files (watchfiles' `PythonFilter`:
    `.py`, `.pyx`, `.pyd`, ignoring `.git`, `__pycache__`..., and any virtual
    environment, a directory with a `pyvenv.cfg`);
    `listeners` are handed to every child; a child still running `grace` seconds after
    it was asked to stop is killed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        directories: Sequence[Path],
        listeners: Sequence[Listener],
        grace: float,
    ) -> None:
        self.argv = list(argv)
        self.directories = list(directories)
        self.listeners = list(listeners)
        self.grace = grace
        self.child: asyncio.subprocess.Process | None = None
        self.code = 0
        self.stopping = False
        self.restarting = False
        self.done = asyncio.Event()
        self.reloads = 0
        self.reapers: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Watch and restart until SIGINT or SIGTERM; the last child's exit code."""
        from watchfiles import awatch  # noqa: PLC0415 - the extra, when used

        loop = asyncio.get_running_loop()
        for sig in (*_STOPS, *_FORWARDED):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            sources = _source_filter(self.directories)
            changes = awatch(*self.directories, watch_filter=sources, stop_event=self.done)
            watching = loop.create_task(self._watch(changes))
            # One turn: the watcher is set up before the first child starts.
            await asyncio.sleep(0)
            logger.info(
                "watching %s for changes to Python files: each one restarts the application "
                "(--reload, for development; never in production)",
                ", ".join(str(directory) for directory in self.directories),
            )
            await self._spawn()
            await self.done.wait()
            await watching
            await asyncio.gather(*self.reapers)
        finally:
            for sig in (*_STOPS, *_FORWARDED):
                loop.remove_signal_handler(sig)
        return self.code

    async def _watch(self, changes: AsyncIterator[set[tuple[Change, str]]]) -> None:
        async for changed in changes:
            if self.stopping:
                continue
            await self._restart({path for _, path in changed})

    async def _restart(self, paths: set[str]) -> None:
        self.reloads += 1
        child = self.child
        if child is not None and child.returncode is None:
            logger.info(
                "reload %d: %s changed; stopping pid %d gracefully, then starting again",
                self.reloads,
                _shown(paths, self.directories),
                child.pid,
            )
            self.restarting = True
            try:
                await self._stop_child(child)
            finally:
                self.restarting = False
        else:
            logger.info(
                "reload %d: %s changed; starting again",
                self.reloads,
                _shown(paths, self.directories),
            )
        if self.stopping:  # a stop signal came while the old one stopped
            self.done.set()
            return
        await self._spawn()

    async def _spawn(self) -> None:
        variables, fds = hand_over(self.listeners)
        self.restarting = True  # until it is known: a stop signal then waits for it
        try:
            child = await self._exec(variables, fds)
        finally:
            self.restarting = False
        self.child = child
        logger.info("started pid %d", child.pid)
        reaper = asyncio.get_running_loop().create_task(self._reap(child))
        self.reapers.add(reaper)
        reaper.add_done_callback(self.reapers.discard)
        if self.stopping:  # a stop signal came while it was being started
            child.send_signal(signal.SIGTERM)

    async def _exec(
        self, variables: dict[str, str], fds: tuple[int, ...]
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tether",
            *self.argv,
            env={**os.environ, **variables},
            pass_fds=fds,
            # Its own process group: a Ctrl-C reaches this process only, which passes
            # it on once (the child would take a second one as "force").
            process_group=0,
        )

    async def _reap(self, child: asyncio.subprocess.Process) -> None:
        code = await child.wait()
        if self.child is not child:
            return
        self.code = code
        if self.stopping:
            self.done.set()
        elif not self.restarting:
            logger.warning(
                "pid %d exited with code %d; it starts again at the next change",
                child.pid,
                code,
            )

    async def _stop_child(self, child: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), self.grace)
        except TimeoutError:
            logger.error(  # noqa: TRY400 - the timeout is the news, not its traceback
                "pid %d still running %gs after SIGTERM: killing it", child.pid, self.grace
            )
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()

    def _on_signal(self, sig: signal.Signals) -> None:
        child = self.child
        running = child is not None and child.returncode is None
        if sig in _FORWARDED:
            if running:
                assert child is not None
                child.send_signal(sig)
            return
        if not self.stopping:
            self.stopping = True
            logger.info("%s received: stopping the application and the reloader", sig.name)
            if self.restarting:
                return  # the child is being stopped already (or started): it ends there
        elif running:
            logger.info("%s received again: passed on (the application stops at once)", sig.name)
        if running:
            assert child is not None
            child.send_signal(signal.SIGTERM)
        elif not self.restarting:
            self.done.set()


def _source_filter(directories: Sequence[Path]) -> Callable[[Change, str], bool]:
    """The Python files to watch: also ignoring virtual environments, whatever their name.

    watchfiles' `PythonFilter` ignores `.venv` but not `venv` or `env`: a
    `pip install` into one of those would restart the application for each file.
    A virtual environment is a directory with a `pyvenv.cfg` (PEP 405).
    """
    from watchfiles import PythonFilter  # noqa: PLC0415 - the extra, when used

    python = PythonFilter()
    tops = set(directories)

    def wanted(change: Change, path: str) -> bool:
        if not python(change, path):
            return False
        for parent in Path(path).parents:
            if parent in tops:  # one inside it only: the directory watched may be one
                break
            if (parent / "pyvenv.cfg").exists():
                return False
        return True

    return wanted


def reload_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """`tether run --reload ...`: the reloader's process; returns the exit code.

    With `--bind` (pre-fork) it binds the sockets itself, and adopts systemd's in any
    case, so that every child it starts serves on the same ones.
    """
    with configured(args.log_level, args.log_format) as ours, contextlib.ExitStack() as stack:
        if ours:  # its "N changes detected" says less than the reload line that follows
            watchfiles_log = logging.getLogger("watchfiles.main")
            stack.callback(watchfiles_log.setLevel, watchfiles_log.level)
            watchfiles_log.setLevel(logging.WARNING)
        directories = [Path(d).resolve() for d in (args.reload_dir or [os.getcwd()])]  # noqa: PTH109
        prefork = args.workers is not None or bool(args.bind)
        timeout = args.graceful_timeout if prefork else args.shutdown_timeout
        grace = (DEFAULT_SHUTDOWN_TIMEOUT if timeout is None else timeout) + _KILL_MARGIN
        if args.bind:
            sockets = stack.enter_context(Sockets(args.bind))
            listeners = sockets.listeners
        else:
            listeners = systemd_listeners()
            stack.callback(_close, listeners)
        code = asyncio.run(Reloader(argv, directories, listeners, grace).run())
        if code < 0:  # the child was killed by a signal: as a shell reports it
            code = 128 - code
        logger.info("reloader stopped (exit code %d)", code)
        return code


def _close(listeners: Iterable[Listener]) -> None:
    for item in listeners:
        item.sock.close()
