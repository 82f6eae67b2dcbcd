"""PID 1 in a container: a minimal init in front of tether, as tini does.

The first process of a PID namespace (a container started without `--init`) inherits
every orphaned process of the namespace, and must reap them or they stay zombies. An
application cannot do that itself without stealing the exit status of the children it
waits for (`subprocess`, asyncio's child watchers). So, when tether finds itself
PID 1, it forks: the parent stays PID 1 and does nothing but reap every process that
ends in it and forward signals to the child; the child (the application, PID 2) runs
as usual, and its own children are its own. When the application exits, PID 1 exits
with the same code (128 + N for a death by signal N, as a shell reports it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import NoReturn

__all__ = ["FORWARDED", "become_init_when_pid1"]

logger = logging.getLogger("tether.init")

FORWARDED = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGWINCH,
        signal.SIGALRM,
        signal.SIGCONT,
    }
)
"""What PID 1 passes on to the application (`docker stop`, `kill`, a terminal)."""

_DISABLE = "TETHER_NO_INIT"


def become_init_when_pid1() -> None:
    """When this process is PID 1, fork a minimal init and return in the child.

    Does nothing when the process is not PID 1, when `TETHER_NO_INIT` is set (you run
    your own init), or on a system without `fork`. When other threads already run, it
    cannot fork safely: it warns that orphans will not be reaped and to run the
    container with an init (`docker run --init`, tini) instead.
    """
    if os.getpid() != 1 or os.environ.get(_DISABLE) or not hasattr(os, "fork"):
        return
    if threading.active_count() > 1:
        logger.warning(
            "tether runs as PID 1 with %d other thread(s) started, so it cannot fork an "
            "init to reap orphaned processes: they will stay zombies. Run the container "
            "with an init (docker run --init, tini) or start tether before any thread.",
            threading.active_count() - 1,
        )
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    watched = {*FORWARDED, signal.SIGCHLD}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return
    _serve_as_init(child, watched)


def _serve_as_init(child: int, watched: set[signal.Signals]) -> NoReturn:
    """PID 1's loop: forward signals to `child`, reap everything, exit as it exited."""
    code = 1
    try:
        while True:
            info = signal.sigwaitinfo(watched)
            if info.si_signo != signal.SIGCHLD:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, info.si_signo)
                continue
            status = _reap_all(child)
            if status is not None:
                code = _exit_code(status)
                _reap_all(child)
                break
    finally:
        os._exit(code)


def _reap_all(child: int) -> int | None:
    """Reap every process that has ended; the wait status of `child` if it has."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == child:
            found = status


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)
