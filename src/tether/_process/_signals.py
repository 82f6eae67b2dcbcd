"""The runner's signal handlers: installed over the defaults only, restored afterwards.

Handlers are Python-level (`signal.signal`), not `loop.add_signal_handler`: they run
in the main thread between bytecodes even while the event loop is blocked, so a second
SIGINT or SIGTERM can always force the exit. Their work on the loop is handed over with
`call_soon_threadsafe` by the callbacks the runner gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["SignalHandlers", "SignalWakeup", "wake_loop_on_signals"]

logger = logging.getLogger("tether.runner")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_OTHER = tuple(
    s for s in (getattr(signal, "SIGHUP", None), getattr(signal, "SIGUSR1", None)) if s is not None
)

_HANGUP = tuple(s for s in (getattr(signal, "SIGHUP", None),) if s is not None)

Callback = Callable[[signal.Signals], None]
ForceCallback = Callable[[signal.Signals, FrameType | None], None]


def _is_default(signum: signal.Signals, handler: Any) -> bool:
    if signum is signal.SIGINT:
        return handler is signal.default_int_handler or handler is signal.SIG_DFL
    return handler is signal.SIG_DFL


class SignalHandlers:
    """Routes SIGINT and SIGTERM, SIGHUP and SIGUSR1 to the runner's callbacks.

    The first INT or TERM goes to `on_stop`, any later one to `on_force` (with the
    frame the signal interrupted: where the event loop's thread was); HUP goes
    to `on_reload` and USR1 to `on_status`. When `hangup_stops()` says there is
    nothing to reload, HUP counts as a stop signal instead (the default disposition
    of a hang-up ends the process).

    A signal whose handler is not the default (someone else installed one, or it is
    ignored, as for a background job's SIGINT) is left alone. Outside the main thread
    nothing is installed: Python only delivers signals there.
    """

    def __init__(
        self,
        *,
        on_stop: Callback,
        on_force: ForceCallback,
        on_reload: Callback,
        on_status: Callback,
        hangup_stops: Callable[[], bool] | None = None,
    ) -> None:
        self.on_stop = on_stop
        self.hangup_stops = hangup_stops
        self.on_force = on_force
        self.callbacks: dict[signal.Signals, Callback] = {}
        if hasattr(signal, "SIGHUP"):
            self.callbacks[signal.SIGHUP] = on_reload
        if hasattr(signal, "SIGUSR1"):
            self.callbacks[signal.SIGUSR1] = on_status
        self.stop_signals = 0
        self.intercept_interrupt: Callable[[], bool] | None = None
        """Set by the REPL: returns True when it consumed a SIGINT (it cancels the
        command running at the prompt instead of stopping the graph)."""
        self.previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Install the handlers (main thread only, over default dispositions only)."""
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not in the main thread: signals are left to the program")
            return
        for signum in (*STOP_SIGNALS, *_OTHER):
            current = signal.getsignal(signum)
            if not _is_default(signum, current):
                logger.debug("%s has a handler already; leaving it", signum.name)
                continue
            self.previous[signum] = current
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back what was there before `install`."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if sig in STOP_SIGNALS or (sig in _HANGUP and self.hangup_stops and self.hangup_stops()):
            if sig is signal.SIGINT and self.intercept_interrupt and self.intercept_interrupt():
                return
            self.stop_signals += 1
            if self.stop_signals > 1:
                self.on_force(sig, frame)
                return
            self.on_stop(sig)
            return
        callback = self.callbacks.get(sig)
        if callback is not None:
            callback(sig)


def wake_loop_on_signals(loop: asyncio.AbstractEventLoop) -> SignalWakeup | None:
    """Make any signal wake `loop`'s select, so the main thread runs its handlers.

    A Python-level handler runs when the main thread next executes bytecode. A signal
    delivered to another thread (an executor's worker, say) does not interrupt the main
    thread's `select`, and an idle loop would sleep on with the signal pending: asyncio
    sets a wakeup descriptor only for `loop.add_signal_handler`. This sets one, read
    by the loop, unless one is set already. A loop that cannot watch a descriptor
    (`add_reader` raises NotImplementedError, as on a proactor loop) is woken by a
    small thread that reads it and calls `call_soon_threadsafe`. Returns what undoes
    it (and takes it back from a loop that sets its own, see `SignalWakeup.reclaim`),
    or None when nothing was done (not the main thread, or a wakeup descriptor exists).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    reader, writer = socket.socketpair()
    reader.setblocking(False)  # noqa: FBT003 - the socket API
    writer.setblocking(False)  # noqa: FBT003 - the socket API
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter, or the loop's own descriptor rules
        reader.close()
        writer.close()
        return None
    if previous != -1:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return None
    return SignalWakeup(loop, reader, writer)


class SignalWakeup:
    """The wakeup descriptor tether set for a loop, and how the loop reads it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, reader: socket.socket, writer: socket.socket
    ) -> None:
        self.loop = loop
        self.reader = reader
        self.writer = writer
        self.forward_to = -1
        """The descriptor of a loop that set its own, to which what arrives is passed on."""
        self.relay: threading.Thread | None = None
        try:
            loop.add_reader(reader.fileno(), self._drain)
        except NotImplementedError:
            reader.setblocking(True)  # noqa: FBT003 - the socket API
            self.relay = threading.Thread(
                target=_relay, args=(reader, loop), name="tether signal wakeup", daemon=True
            )
            self.relay.start()
            logger.debug("%s cannot watch descriptors: a thread wakes it on signals", type(loop))

    def reclaim(self) -> None:
        """In the running loop: take the wakeup descriptor back from a loop that set its own.

        Some loops (rloop) set their own descriptor while they run, and read it without
        running Python code: a signal then waits for the next callback. Tether's
        descriptor is put back, and what arrives on it is passed on to the loop's, so
        the loop's own signal handling (`add_signal_handler`) still sees every signal.
        """
        if self.relay is not None:
            return
        with contextlib.suppress(ValueError):
            current = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
            if current not in (-1, self.writer.fileno()):
                self.forward_to = current
                logger.debug("the loop set its own signal wakeup descriptor; tether's forwards")

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.reader.recv(4096):
                if self.forward_to != -1:
                    os.write(self.forward_to, data)

    def close(self) -> None:
        """Unset the descriptor, stop reading it, close it."""
        with contextlib.suppress(ValueError):
            if signal.set_wakeup_fd(-1) != self.writer.fileno():
                logger.debug("the signal wakeup descriptor was replaced meanwhile")
        self.forward_to = -1
        if self.relay is None:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self.loop.remove_reader(self.reader.fileno())
        else:
            self.writer.shutdown(socket.SHUT_WR)  # the relay reads the end and returns
            self.relay.join()
        self.reader.close()
        self.writer.close()


def _relay(reader: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
    """Wake `loop` each time a signal arrives, until the writing end is shut down."""
    while reader.recv(4096):
        try:
            loop.call_soon_threadsafe(_wake)
        except RuntimeError:  # the loop closed: nothing left to wake
            return


def _wake() -> None:
    """Nothing: running any Python code in the main thread runs the pending handlers."""
