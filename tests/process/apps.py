"""Programs the process tests run with ``python -m tether run tests.process.apps:NAME``.

Each prints what happens to stdout (flushed) so a test can follow it, and some send
marker datagrams to ``NOTIFY_SOCKET`` so the fake systemd sees hooks and notify
messages in one ordered stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import tether


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def mark(text: str) -> None:
    """Send ``text`` to the notify socket, in order with the runner's own messages."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), target)


class Step(tether.Service):
    """Says when it starts and stops; optionally a dependency of others."""

    def __init__(self, name: str, *deps: Any) -> None:
        self.name = name
        self.deps = list(deps)

    @property
    def dependencies(self) -> list[Any]:
        return self.deps

    async def start(self) -> None:
        say(f"start:{self.name}")

    async def stop(self) -> None:
        mark(f"X-STOP-HOOK={self.name}")
        say(f"stop:{self.name}")


class Root(Step):
    """The root of most apps: its started hook marks the notify stream; exit says so."""

    def on_started(self) -> None:
        mark("X-STARTED-HOOK=1")
        say("started-hook")

    def on_reload(self) -> None:
        say("reload:root")

    def on_exit(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            say("exit-hook: no event loop")
        else:
            say("exit-hook: inside a loop (wrong)")


def idle() -> Root:
    """Three services that do nothing until stopped."""
    db = Step("db")
    return Root("root", db, [Step("cache", db), Step("queue")])


# ----------------------------------------------------------------- crashes


class Crasher(Root):
    """Crashes one of its tasks on SIGUSR2."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR2, self._crash)
        say("start:crasher")

    def _crash(self) -> None:
        self.add_task(self._boom(), name="boom")

    async def _boom(self) -> None:
        raise RuntimeError("the task blew up")

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
        say("stop:crasher")


def crash() -> Crasher:
    return Crasher("crasher", Step("db"))


class FailingStart(tether.Service):
    async def start(self) -> None:
        raise ConnectionError("database unreachable")


def failing_start() -> Root:
    """``db`` starts, then ``broken`` fails: ``db`` is stopped again, exit code 3."""
    db = Step("db")
    return Root("root", db, FailingStart())


class FailingInit(Step):
    def on_init(self) -> None:
        say("init:failing")
        raise ValueError("bad configuration")


def failing_init() -> Root:
    return Root("root", FailingInit("config"))


class Loop(tether.Service):
    """One half of a cycle."""

    def __init__(self) -> None:
        self.other: Loop | None = None

    @property
    def dependencies(self) -> list[Any]:
        return [self.other] if self.other else []


def cycle() -> Loop:
    a, b = Loop(), Loop()
    a.other, b.other = b, a
    return a


class SlowStart(Step):
    """A start hook that never finishes on its own."""

    async def start(self) -> None:
        say(f"start-begin:{self.name}")
        await asyncio.Event().wait()  # until cancelled


def slow_start() -> Root:
    return Root("root", Step("db"), SlowStart("slow"))


# ------------------------------------------------------------- stuck stops


class SlowStop(Step):
    """A stop hook that never finishes on its own (and no graceful timeout of its own)."""

    @property
    def graceful_shutdown_timeout(self) -> float:
        return math.inf

    async def stop(self) -> None:
        mark("X-STOP-HOOK=slow")
        say("stop-begin:slow")
        await asyncio.Event().wait()  # until cancelled


def slow_stop() -> Root:
    return Root("root", SlowStop("slow"))


class Swallower(Step):
    """A background task that swallows every cancellation."""

    @tether.task
    async def stubborn(self) -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()


def swallow() -> Root:
    return Root("root", Swallower("swallower"))


class Blocker(Step):
    """A stop hook that blocks the event loop itself."""

    @property
    def graceful_shutdown_timeout(self) -> float:
        return math.inf

    async def stop(self) -> None:
        say("stop-begin:blocker")
        time.sleep(3600)  # noqa: ASYNC251 - the point: a blocking call in a hook (the deadline ends it)


def block_stop() -> Root:
    return Root("root", Blocker("blocker"))


# ----------------------------------------------------------------- reloads


class Reloading(Step):
    """Reloads fine the first time, fails the second."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reloads = 0

    async def on_reload(self) -> None:
        self.reloads += 1
        mark(f"X-RELOAD-HOOK={self.reloads}")
        say(f"reload:{self.name}:{self.reloads}")
        if self.reloads == 2:
            raise RuntimeError("the new configuration is invalid")


def reloading() -> Root:
    return Root("root", Reloading("config"))


# ---------------------------------------------------------------- watchdog


class LoopBlocker(Step):
    """Blocks the event loop for a while on SIGUSR2 (a busy or stuck loop)."""

    async def start(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self._block)
        say(f"start:{self.name}")

    def _block(self) -> None:
        mark("X-BLOCK=begin")
        time.sleep(1.0)
        mark("X-BLOCK=end")

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)


def loop_blocker() -> Root:
    return Root("root", LoopBlocker("blocker"))


# --------------------------------------------------------------- status, misc


class Worker(Step):
    """Has a background task suspended in its own code, for the status tree."""

    @tether.task
    async def consume(self) -> None:
        while await self.sleep(3600):
            pass


def status_app() -> Root:
    return Root("root", Worker("worker"), Step("db"))


class Faulty(Step):
    """Schedules a callback that raises: an unhandled error the loop must not lose."""

    async def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._explode)
        say("start:faulty")

    def _explode(self) -> None:
        raise ZeroDivisionError("nobody handles this")


def loop_error() -> Root:
    return Root("root", Faulty("faulty"))


class Counter(tether.Service):
    """For the REPL: state to poke at with top-level await."""

    def __init__(self) -> None:
        self.count = 0

    async def bump(self) -> int:
        await asyncio.sleep(0)
        self.count += 1
        return self.count

    async def stop(self) -> None:
        say(f"stop:counter:{self.count}")


class Shell(tether.Service):
    def __init__(self) -> None:
        self.counter = Counter()

    @property
    def dependencies(self) -> list[Any]:
        return [self.counter]

    async def stop(self) -> None:
        say("stop:shell")


repl_app = Shell()


class OffThread(Step):
    """Given a line on stdin, a thread of its own sends SIGTERM to itself, not to main.

    The main thread sleeps in the event loop's select; only a wakeup of the loop lets it
    run the Python-level handler of a signal another thread received.
    """

    async def start(self) -> None:
        await super().start()
        threading.Thread(target=self._aim, name="aim", daemon=True).start()

    def _aim(self) -> None:
        if sys.stdin.readline():
            say("off-thread-sigterm")
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)


def off_thread() -> Root:
    return Root("root", OffThread("sender"))


class BrokenDependencies(tether.Service):
    """Its dependencies property raises: the graph cannot even be read."""

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        raise RuntimeError("the dependencies could not be computed")


broken_dependencies = BrokenDependencies()
number = 42


def needs_arguments(url):  # type: ignore[no-untyped-def]
    """A factory the command cannot call: its parameter has no annotation to inject by."""
    return Root("root", url)


class Orphans(Step):
    """Leaves an orphan behind, and waits for its own children's exit statuses.

    ``sh`` starts ``sleep`` in the background and exits: the sleep is reparented to PID 1,
    and becomes a zombie when it ends unless PID 1 reaps it. Meanwhile the service's own
    children (subprocess, asyncio) must still get their exit statuses.
    """

    async def start(self) -> None:
        self.add_task(self.watch(), name="orphans.watch")

    async def watch(self) -> None:
        made = subprocess.run(  # noqa: ASYNC221 - a test app; the shell returns at once
            ["sh", "-c", "sleep 0.2 & echo $!"],  # noqa: S607 - the shell on the PATH
            capture_output=True,
            text=True,
            check=True,
        )
        orphan = int(made.stdout)
        say(f"orphan {orphan}, my pid {os.getpid()}, parent {os.getppid()}")
        own = subprocess.run(["sh", "-c", "exit 7"], check=False)  # noqa: S607, ASYNC221
        spawned = await asyncio.create_subprocess_exec("sh", "-c", "exit 5")
        say(f"statuses {own.returncode} {await spawned.wait()}")
        for _ in range(1000):  # bounded: 10 s
            state = _process_state(orphan)
            if state is None:
                say("orphan reaped")
                return
            await asyncio.sleep(0.01)
        say(f"orphan left as {state}")


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (Z for a zombie), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:  # noqa: PTH123 - one small read
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def orphans() -> Root:
    return Root("root", Orphans("orphans"))


# ------------------------------------------------------- blocked-loop detector


class Stalling(Step):
    """On SIGUSR2, its background task blocks the loop for a second (a blocking call)."""

    async def start(self) -> None:
        self.wake = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self.wake.set)
        say(f"start:{self.name}")

    @tether.task
    async def crunch(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            self.lookup()

    def lookup(self) -> None:
        mark("X-BLOCK=begin")
        time.sleep(1.0)  # the blocking call the detector is to name
        mark("X-BLOCK=end")
        say("unblocked")

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)


def stalling() -> Root:
    return Root("root", Stalling("cache"))
