"""What a test left behind: tasks, threads, child processes and sockets.

A snapshot holds the identities of what is alive (tasks of the given event loops,
threads, child processes, socket file descriptors); the difference between a snapshot
taken before a test and one taken after it is what the test leaked, once things that
are already finishing have been given a moment to finish. Descriptions name each leak
the way a developer looks for it: a task by its name, coroutine and where it is
suspended, a thread by its name and where it runs, a child by its pid and command line,
a socket by its addresses.

Child processes are found through `/proc` (Linux); sockets through the process's file
descriptor directory (`/proc/self/fd`, or `/dev/fd` elsewhere). Where neither
exists, those kinds are not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import linecache
import os
import shlex
import socket
import stat
import sys
import sysconfig
import threading
import time
import types
from collections.abc import Iterable
from typing import Any

from tether._core._actions import user_coroutine

__all__ = ["KINDS", "Resources", "allowed", "current_loop", "describe", "settle", "snapshot"]

KINDS = ("tasks", "threads", "processes", "sockets")
"""The kinds of leak, as named in `tether_allow_leaks` markers."""

_SocketId = tuple[int, int, int]  # fd, device, inode: a reused fd number is another socket
_FD_DIRS = ("/proc/self/fd", "/dev/fd")
_STDLIB = sysconfig.get_paths()["stdlib"]


class Resources:
    """Sets of live things, one per kind, with set arithmetic kind by kind."""

    __slots__ = ("processes", "sockets", "tasks", "threads")

    def __init__(
        self,
        tasks: Iterable[asyncio.Task[Any]] = (),
        threads: Iterable[threading.Thread] = (),
        processes: Iterable[int] = (),
        sockets: Iterable[_SocketId] = (),
    ) -> None:
        self.tasks = set(tasks)
        self.threads = set(threads)
        self.processes = set(processes)
        self.sockets = set(sockets)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.tasks - other.tasks,
            self.threads - other.threads,
            self.processes - other.processes,
            self.sockets - other.sockets,
        )

    def __or__(self, other: Resources) -> Resources:
        return Resources(
            self.tasks | other.tasks,
            self.threads | other.threads,
            self.processes | other.processes,
            self.sockets | other.sockets,
        )

    def __bool__(self) -> bool:
        return bool(self.tasks or self.threads or self.processes or self.sockets)

    def __repr__(self) -> str:
        return (
            f"<Resources tasks={len(self.tasks)} threads={len(self.threads)} "
            f"processes={len(self.processes)} sockets={len(self.sockets)}>"
        )


# ------------------------------------------------------------------------ snapshots


def snapshot(loops: Iterable[asyncio.AbstractEventLoop], kinds: Iterable[str]) -> Resources:
    """What is alive now, of the given kinds; tasks are those of `loops` still open."""
    kinds = set(kinds)
    found = Resources()
    if "tasks" in kinds:
        for loop in loops:
            if not loop.is_closed():
                found.tasks.update(asyncio.all_tasks(loop))
    if "threads" in kinds:
        found.threads.update(threading.enumerate())
    if "processes" in kinds:
        found.processes.update(_children())
    if "sockets" in kinds:
        found.sockets.update(_sockets())
    return found


def allowed(loops: Iterable[asyncio.AbstractEventLoop]) -> Resources:
    """What lives on purpose beyond a test, though no test or fixture owns it.

    * The worker threads of the default executor of an event loop that is still open:
      asyncio keeps them between `run_in_executor`/`to_thread` calls and joins them
      when the loop is closed (`asyncio.run` and `asyncio.Runner` shut the executor
      down), so they belong to the loop, and a loop that outlives the test outlives them.
    * The sockets of the self-pipe of the thread's current event loop (what
      `asyncio.get_event_loop()` returns outside a running loop): asyncio's own, made
      on demand and kept between tests (pytest-asyncio before 1.1 leaves one there).
    * multiprocessing's resource tracker and fork server processes, started on first use
      and kept for the life of the interpreter.
    """
    found = Resources()
    for loop in loops:
        if loop.is_closed():
            continue
        executor = getattr(loop, "_default_executor", None)
        found.threads.update(getattr(executor, "_threads", ()))
    current = current_loop()
    for end in (getattr(current, "_ssock", None), getattr(current, "_csock", None)):
        if isinstance(end, socket.socket) and end.fileno() >= 0:
            info = os.fstat(end.fileno())
            found.sockets.add((end.fileno(), info.st_dev, info.st_ino))
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(tracker, "_resource_tracker", None), "_pid", None)
    if isinstance(pid, int):
        found.processes.add(pid)
    forkserver = sys.modules.get("multiprocessing.forkserver")
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if isinstance(pid, int):
        found.processes.add(pid)
    return found


def current_loop() -> asyncio.AbstractEventLoop | None:
    """The open event loop set as this thread's current loop, without making one."""
    policy = getattr(asyncio.events, "_event_loop_policy", None)
    loop = getattr(getattr(policy, "_local", None), "_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_closed():
        return loop
    return None


def _children() -> set[int]:
    """The pids of this process's children (Linux: /proc/self/task/*/children)."""
    pids: set[int] = set()
    try:
        threads = os.listdir("/proc/self/task")  # noqa: PTH208  (names, not paths, wanted)
    except OSError:
        return pids
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as file:  # noqa: PTH123
                pids.update(int(pid) for pid in file.read().split())
        except OSError:
            continue  # the thread ended meanwhile, or the kernel does not list children
    return pids


def _sockets() -> set[_SocketId]:
    for directory in _FD_DIRS:
        try:
            names = os.listdir(directory)  # noqa: PTH208  (names, not paths, wanted)
        except OSError:
            continue
        break
    else:
        return set()
    found: set[_SocketId] = set()
    for name in names:
        try:
            fd = int(name)
            info = os.fstat(fd)
        except (ValueError, OSError):
            continue  # the listing's own descriptor, already closed
        if stat.S_ISSOCK(info.st_mode):
            found.add((fd, info.st_dev, info.st_ino))
    return found


# ------------------------------------------------------------------------- settling


def settle(
    suspects: Resources, loops: Iterable[asyncio.AbstractEventLoop], deadline: float
) -> None:
    """Give what is already finishing until `deadline` (`time.monotonic()`) to finish.

    Open loops that are not running are run briefly, so that tasks being cancelled and
    transports being closed complete; threads are joined and child processes awaited
    (never reaped: that is their owner's job) until the deadline.
    """
    for loop in loops:
        if loop.is_closed() or loop.is_running():
            continue
        tasks = {task for task in suspects.tasks if task.get_loop() is loop}
        loop.run_until_complete(_drain(tasks, deadline))
    for thread in suspects.threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    pending = set(suspects.processes)
    while pending:
        pending &= {pid for pid in _children() if _state(pid) != "Z"}
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.01)


async def _drain(tasks: set[asyncio.Task[Any]], deadline: float) -> None:
    for _ in range(3):  # callbacks scheduled by closing transports and cancelled tasks
        await asyncio.sleep(0)
    pending = {task for task in tasks if not task.done()}
    if pending:
        await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))


# ----------------------------------------------------------------------- describing


def describe(leaks: Resources) -> dict[str, list[str]]:
    """One line per leak, by kind, sorted for a stable report."""
    found: dict[str, list[str]] = {}
    if leaks.tasks:
        found["tasks"] = sorted(_describe_task(task) for task in leaks.tasks)
    if leaks.threads:
        found["threads"] = sorted(_describe_thread(thread) for thread in leaks.threads)
    if leaks.processes:
        found["processes"] = [_describe_child(pid) for pid in sorted(leaks.processes)]
    if leaks.sockets:
        found["sockets"] = [_describe_socket(fd) for fd, _, _ in sorted(leaks.sockets)]
    return found


def _describe_task(task: asyncio.Task[Any]) -> str:
    coro = user_coroutine(task)
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    text = f"task {task.get_name()!r} running {name}()"
    frame = _application_frame(_await_chain(coro))
    if frame is not None:
        text += f", suspended at {_frame_text(frame)}"
    created = getattr(task, "_source_traceback", None)  # set when the loop is in debug mode
    if created:
        origin = created[-1]
        text += f" (created at {_shown_path(origin.filename)}:{origin.lineno})"
    return text


def _await_chain(coro: object) -> list[types.FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first."""
    frames: list[types.FrameType] = []
    current: object = coro
    for _ in range(1000):  # a bound on pathological chains
        here = (
            getattr(current, "cr_frame", None)
            or getattr(current, "ag_frame", None)
            or getattr(current, "gi_frame", None)
        )
        if not isinstance(here, types.FrameType):
            break
        frames.append(here)
        current = (
            getattr(current, "cr_await", None)
            or getattr(current, "ag_await", None)
            or getattr(current, "gi_yieldfrom", None)
        )
        if current is None:
            break
    return frames


def _application_frame(frames: list[types.FrameType]) -> types.FrameType | None:
    """The innermost frame outside the standard library (the innermost if none is)."""
    for frame in reversed(frames):
        if not _is_stdlib(frame.f_code.co_filename):
            return frame
    return frames[-1] if frames else None


def _describe_thread(thread: threading.Thread) -> str:
    kind = "daemon thread" if thread.daemon else "thread"
    text = f"{kind} {thread.name!r}"
    target = getattr(thread, "_target", None)  # Thread.run deletes it when it returns
    if target is not None:
        text += f" running {getattr(target, '__qualname__', None) or repr(target)}"
    frames: list[types.FrameType] = []
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    chosen = _application_frame(frames[::-1])
    if chosen is not None:
        text += f", at {_frame_text(chosen)}"
    return text


def _describe_child(pid: int) -> str:
    state = _state(pid)
    command = ""
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as file:  # noqa: PTH123
            args = [arg.decode(errors="replace") for arg in file.read().split(b"\0") if arg]
        command = shlex.join(args)
    if not command:
        with (
            contextlib.suppress(OSError),
            open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as file,  # noqa: PTH123
        ):
            command = f"[{file.read().strip()}]"
    if state == "Z":
        return f"child process {pid} {command or '?'}: exited, never waited for"
    return f"child process {pid}: {command or '?'}"


def _state(pid: int) -> str:
    """The one-letter state of a process from /proc (`Z` for a zombie), or `?`."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:  # noqa: PTH123
            return file.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "?"


def _describe_socket(fd: int) -> str:
    try:
        duplicate = os.dup(fd)  # inspected through a copy: the leaked one stays as it is
    except OSError:
        return f"socket (fd {fd})"
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return f"socket (fd {fd})"
    with sock:
        family = sock.family
        kind = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "datagram"}.get(
            sock.type, str(sock.type)
        )
        if family in (socket.AF_INET, socket.AF_INET6):
            protocol = {"stream": "TCP", "datagram": "UDP"}.get(kind, kind)
            label = f"{protocol} socket"
        elif family == getattr(socket, "AF_UNIX", None):
            label = f"Unix {kind} socket"
        else:
            label = f"{getattr(family, 'name', family)} {kind} socket"
        local = _address(_safely(sock.getsockname))
        peer = _address(_safely(sock.getpeername))
        listening = bool(
            hasattr(socket, "SO_ACCEPTCONN")
            and _safely(lambda: sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        )
    if listening:
        text = f"{label} listening on {local}"
    elif peer:
        text = f"{label} {local or '(unnamed)'} connected to {peer}"
    elif local:
        text = f"{label} bound to {local}"
    else:
        text = f"{label}, unnamed (one end of a socket pair, or never bound)"
    return f"{text} (fd {fd})"


def _safely(call: Any) -> Any:
    try:
        return call()
    except OSError:
        return None


def _address(address: Any) -> str:
    if address is None or address in ("", b""):
        return ""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, bytes):  # an abstract Unix address
        return repr(address)
    return str(address)


# -------------------------------------------------------------------------- helpers


def _frame_text(frame: types.FrameType) -> str:
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno).strip()
    text = f"{_shown_path(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
    return f"{text}: {line}" if line else text


def _shown_path(filename: str) -> str:
    with contextlib.suppress(ValueError):
        relative = os.path.relpath(filename)
        if not relative.startswith(".."):
            return relative
    return filename


def _is_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "site-packages" not in filename
