"""systemd's notify protocol: one datagram per message, no third-party package.

`NOTIFY_SOCKET` names an AF_UNIX datagram socket, as a path or as `@name` for an
abstract one. Each message is `KEY=value` lines in one datagram. The runner sends
`READY=1` once the graph started, `RELOADING=1` (with `MONOTONIC_USEC`) and then
`READY=1` around a reload, `STOPPING=1` before the first stop hook, `STATUS=`
lines while starting and stopping (built on lifecycle events), and `WATCHDOG=1`
pings from a task on the event loop, so a blocked loop stops them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

from tether._core._events import EventKind, LifecycleEvent
from tether._core._records import ServiceState, display_name

__all__ = ["Notifier", "Progress", "watchdog_interval"]

logger = logging.getLogger("tether.systemd")

_STATUS_EVERY = 0.25  # seconds between progress STATUS lines while a stage runs


class Notifier:
    """Sends notify messages to the socket named by `NOTIFY_SOCKET`.

    Sending never raises: the service manager going away must not take the service
    down with it. The first failure is logged, later ones are counted silently.
    """

    def __init__(self, address: str) -> None:
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        else:
            raise ValueError(
                f"NOTIFY_SOCKET={address!r} is neither a path (/run/...) nor an abstract "
                f"socket (@name); tether supports those two forms."
            )
        self.shown = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)  # noqa: FBT003 - the socket API
        self.failures = 0
        self.stopping_sent = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """A notifier for `NOTIFY_SOCKET`, or None when it is unset or unusable."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        try:
            return cls(address)
        except (ValueError, OSError) as exc:
            logger.warning("systemd notify disabled: %s", exc)
            return None

    def send(self, *fields: str) -> bool:
        """Send `fields` (`KEY=value` each) as one datagram; False if it failed."""
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            self.sock.sendto(data, self.address)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1:
                logger.warning("systemd notify to %s failed: %s", self.shown, exc)
            return False
        return True

    def ready(self, status: str) -> None:
        """`READY=1` with a status line."""
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """`RELOADING=1` with the monotonic time systemd needs to match it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str) -> None:
        """`STOPPING=1` once, before the first stop hook."""
        if self.stopping_sent:
            return
        self.stopping_sent = True
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        """A `STATUS=` line (one line: newlines would start a new field)."""
        self.send("STATUS=" + " ".join(text.split()))

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` pings: half of `WATCHDOG_USEC`, or None.

    None when `WATCHDOG_USEC` is unset or not a positive integer, or when
    `WATCHDOG_PID` names another process (the watchdog is someone else's).
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        if raw:
            logger.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid.strip() != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000


async def ping_watchdog(notifier: Notifier, interval: float) -> None:
    """Send `WATCHDOG=1` every `interval` seconds for as long as the loop runs it."""
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)


class Progress:
    """Turns lifecycle events into `STATUS=` lines and `STOPPING=1`.

    A line goes out when a stage begins and, while it runs, at most every quarter of a
    second (a trailing update names what is still in progress, so a service stuck in
    its start hook shows in `systemctl status`).
    """

    def __init__(self, notifier: Notifier, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier = notifier
        self.loop = loop
        self.stage: str | None = None
        self.total = 0
        self.done = 0
        self.busy: dict[int, str] = {}
        self.last_sent = 0.0
        self.pending: asyncio.TimerHandle | None = None
        self.starting = True
        """While the graph starts, a stop means a failed start is being rolled back:
        `STOPPING=1` goes out before the first stop hook of that rollback."""

    def __call__(self, event: LifecycleEvent) -> None:
        kind = event.kind
        if kind is EventKind.STAGE_BEGIN:
            self.stage = event.stage
            self.total = event.count or 0
            self.done = 0
            self.busy.clear()
            if self.starting and event.stage in ("stopping", "stop"):
                self.notifier.stopping("start failed: stopping what had started")
            self._send_now()
        elif kind is EventKind.STATE and event.service is not None:
            state = event.state
            key = id(event.service)
            if state in (ServiceState.STARTING, ServiceState.STOPPING):
                if state is ServiceState.STOPPING and self.starting:
                    self.notifier.stopping("start failed: stopping what had started")
                self.busy[key] = display_name(event.service)
            elif self.busy.pop(key, None) is not None:
                self.done += 1
            self._send_soon()
        elif kind is EventKind.STAGE_END:
            self.close()

    def _text(self) -> str:
        text = f"{self.stage}: {self.done}/{self.total} services"
        if self.busy:
            names = list(self.busy.values())
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            text += f"; in progress: {shown}"
        return text

    def _send_now(self) -> None:
        self.close()
        self.last_sent = time.monotonic()
        self.notifier.status(self._text())

    def _send_soon(self) -> None:
        if self.pending is not None:
            return
        delay = self.last_sent + _STATUS_EVERY - time.monotonic()
        if delay <= 0:
            self._send_now()
        else:
            self.pending = self.loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self.pending = None
        self._send_now()

    def close(self) -> None:
        """Drop a pending progress line (the run is over)."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
