"""Listening sockets a process is handed: bound by a pre-fork master or by systemd.

`--bind` specs (`tcp://host:port`, `unix:/path`) are bound by the master before it
forks; systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`)
hands sockets over from fd 3 on; `tether run --reload` hands its own over to each
process it starts (`hand_over`, `adopt_handed_over`). Either way they end up in this
process's set of listeners, which [`listeners`][tether.listeners] returns and the HTTP
servers of `tether.ext` serve on when they are given no address of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import stat
import struct
import sys
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from tether._core._errors import TetherError
from tether._core._service import BlockingService
from tether._process._listen import bind as bind_tcp
from tether._process._listen import check_seconds

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "BindError",
    "Listener",
    "Sockets",
    "adopt_handed_over",
    "adopt_systemd",
    "backlog_of",
    "hand_over",
    "listeners",
    "parse_bind",
    "refuse_new_connections",
    "refusing",
    "set_listeners",
    "stop_serving",
    "systemd_listeners",
]

logger = logging.getLogger("tether.sockets")

SD_LISTEN_FDS_START = 3
_BACKLOG = 2048


class BindError(TetherError, ValueError):
    """A `--bind` spec that cannot be understood or bound; the message says which."""


class Listener:
    """One listening socket and the name it goes by (its bind spec or systemd's name)."""

    __slots__ = ("backlog", "name", "sock", "systemd", "unlink")

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        *,
        unlink: Path | None = None,
        systemd: bool = False,
        backlog: int | None = None,
    ) -> None:
        self.name = name
        self.sock = sock
        self.unlink = unlink
        """The Unix socket path bound here, removed when the socket is closed for good."""
        self.systemd = systemd
        """Passed by systemd (or `tether run --reload`), which keeps it open across
        restarts of the service."""
        self.backlog = backlog
        """The accept queue's length as bound (ours) or found (systemd's `Backlog=`):
        kept whatever listen() the servers in the workers call again. None: unknown."""

    def keep_backlog(self) -> None:
        """Listen again with `backlog`: a server's own `listen(128)` is undone."""
        if self.backlog is not None and self.sock.fileno() != -1:
            with contextlib.suppress(OSError):
                self.sock.listen(self.backlog)

    def __repr__(self) -> str:
        return f"<Listener {self.name} fd={self.sock.fileno()}>"


class _Process:
    """What this process was handed; set once per process (after a fork, by the worker)."""

    listeners: list[Listener] | None = None
    systemd: tuple[int, list[Listener]] | None = None
    """systemd's sockets, adopted once by this process (pid): whoever asks first."""
    handed: tuple[int, list[tuple[int, str]]] | None = None
    """What `tether run --reload` handed this process (pid): adopted as systemd's."""


def systemd_listeners() -> list[Listener]:
    """The sockets systemd passed to this process: adopted on the first call, kept after.

    Adopting removes the variables from the environment, so a second adoption would
    find nothing: the application importing `tether.listeners()` in a preloading
    master and the master's own `Sockets` must share one adoption.
    """
    pid = os.getpid()
    adopted = _Process.systemd
    if adopted is None or adopted[0] != pid:
        handed = _Process.handed
        if handed is not None and handed[0] == pid:
            found = _adopt_handed(handed[1])
        else:
            found = adopt_systemd()
        adopted = _Process.systemd = (pid, found)
    return adopted[1]


def listeners(name: str | None = None) -> list[socket.socket]:
    """The listening sockets handed to this process, in the order given.

    In a pre-fork worker (see [`prefork`][tether.prefork]): the sockets its master bound
    (`--bind`) or adopted from systemd. In a single process started by systemd
    socket activation: the sockets systemd passed (adopted on the first call:
    `LISTEN_FDS` from fd 3 on, for this process only when `LISTEN_PID` is its pid;
    the variables are then removed from the environment and the descriptors made
    close-on-exec). Elsewhere: an empty list.

    `name` keeps those of one name: systemd's `FileDescriptorName=` (from
    `LISTEN_FDNAMES`) or the bind spec as written (`tcp://127.0.0.1:8000`). The
    sockets stay owned by tether: serve on them (the servers of `tether.ext` listen
    on a duplicate), do not close them.
    """
    found = _Process.listeners
    if found is None:
        found = systemd_listeners()
    if name is None:
        return [item.sock for item in found]
    return [item.sock for item in found if item.name == name]


def set_listeners(items: Iterable[Listener]) -> None:
    """Make `items` this process's listeners (a worker, after the fork)."""
    _Process.listeners = list(items)


# ------------------------------------------------------------------ systemd


def adopt_systemd(environ: MutableMapping[str, str] | None = None) -> list[Listener]:
    """The sockets systemd passed to this process, the variables then removed.

    Nothing (an empty list) unless `LISTEN_PID` is this process's pid and
    `LISTEN_FDS` a positive count. Each descriptor becomes a socket of its real
    family and type, close-on-exec, named by `LISTEN_FDNAMES` (systemd's default name
    is `unknown`). A descriptor that is not a socket is an error naming it.
    """
    env = os.environ if environ is None else environ
    raw_pid = env.get("LISTEN_PID", "")
    raw_count = env.get("LISTEN_FDS", "")
    raw_names = env.get("LISTEN_FDNAMES", "")
    if not raw_pid and not raw_count:
        return []
    if raw_pid.strip() != str(os.getpid()):
        logger.debug("LISTEN_PID=%s is not this process (%d): not adopting", raw_pid, os.getpid())
        return []
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    try:
        count = int(raw_count)
    except ValueError:
        raise BindError(f"LISTEN_FDS={raw_count!r} is not a number of descriptors.") from None
    if count <= 0:
        return []
    names = raw_names.split(":") if raw_names else []
    found: list[Listener] = []
    for index in range(count):
        fd = SD_LISTEN_FDS_START + index
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise BindError(
                f"LISTEN_FDS={count} but fd {fd} is not open ({exc.strerror}); "
                f"the socket unit and the service disagree."
            ) from None
        if not stat.S_ISSOCK(mode):
            raise BindError(
                f"fd {fd} passed by systemd (LISTEN_FDS={count}) is not a socket; tether "
                f"adopts sockets only (ListenStream=, not ListenFIFO=)."
            )
        os.set_inheritable(fd, False)  # noqa: FBT003 - the os API
        sock = socket.socket(fileno=fd)
        name = names[index] if index < len(names) and names[index] else "unknown"
        found.append(Listener(name, sock, systemd=True, backlog=_tcp_backlog(sock)))
    logger.info(
        "adopted %d socket(s) from systemd: %s",
        len(found),
        ", ".join(f"{item.name}={describe(item.sock)}" for item in found),
    )
    return found


# ------------------------------------------------------------------ reloader

HANDED_BY = "TETHER_RELOADER"
"""The variable naming the process that handed sockets over (its pid)."""
HANDED_SOCKETS = "TETHER_RELOAD_SOCKETS"
"""The variable listing them: JSON `[[fd, name], ...]`."""


def hand_over(items: Iterable[Listener]) -> tuple[dict[str, str], tuple[int, ...]]:
    """The variables and descriptors that hand `items` to a child of this process.

    The child keeps the descriptors' numbers (`pass_fds`) and finds them with
    `adopt_handed_over`, as if systemd had passed them: it serves on them and leaves
    them open when it stops, so connections wait in their backlog for the next child.
    """
    import json  # noqa: PLC0415 - `tether run --reload` only

    listed = [(item.sock.fileno(), item.name) for item in items]
    variables = {HANDED_BY: str(os.getpid()), HANDED_SOCKETS: json.dumps(listed)}
    return variables, tuple(fd for fd, _ in listed)


def adopt_handed_over(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether this process was started by `tether run --reload`; adopt what it handed.

    Only when `TETHER_RELOADER` names the parent process; the variables are then
    removed, and the sockets become this process's systemd sockets (see
    [`listeners`][tether.listeners]), named as the reloader named them, when they are
    first asked for (logging is set up by then).
    """
    env = os.environ if environ is None else environ
    if env.get(HANDED_BY) != str(os.getppid()):
        return False
    del env[HANDED_BY]
    raw = env.pop(HANDED_SOCKETS, "[]")
    import json  # noqa: PLC0415 - `tether run --reload` only

    listed = [(int(fd), str(name)) for fd, name in json.loads(raw)]
    for fd, _ in listed:
        os.set_inheritable(fd, False)  # noqa: FBT003 - the os API
    _Process.handed = (os.getpid(), listed)
    return True


def _adopt_handed(listed: list[tuple[int, str]]) -> list[Listener]:
    found: list[Listener] = []
    for fd, name in listed:
        sock = socket.socket(fileno=fd)
        found.append(Listener(name, sock, systemd=True, backlog=_tcp_backlog(sock)))
    if found:
        logger.info(
            "adopted %d socket(s) from the reloader: %s",
            len(found),
            ", ".join(f"{item.name}={describe(item.sock)}" for item in found),
        )
    return found


# ------------------------------------------------------------------ binding


def parse_bind(spec: str) -> tuple[str, str | int, str]:
    """`(kind, host or path, port)`: `("tcp", host, port)` or `("unix", path, "")`.

    Accepted: `tcp://HOST:PORT` (`[::1]:PORT` for IPv6; `HOST:PORT` alone means
    tcp too) and `unix:/path` (or `unix:///path`). Raises `BindError`
    naming the spec otherwise.
    """
    if not spec:
        raise BindError(f"bind takes specs such as 'tcp://127.0.0.1:8000', got {spec!r}.")
    if spec.startswith("unix:"):
        path = spec.removeprefix("unix:")
        path = path.removeprefix("//")
        if not path:
            raise BindError(f"bind {spec!r} names no path; write unix:/run/app.sock.")
        return "unix", path, ""
    rest = spec.removeprefix("tcp://")
    if "://" in rest:
        raise BindError(
            f"bind {spec!r}: unknown scheme; use tcp://HOST:PORT or unix:/path "
            f"(systemd sockets come by socket activation, no --bind needed)."
        )
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BindError(
            f"bind {spec!r} is not tcp://HOST:PORT with a port from 0 to 65535 "
            f"(e.g. tcp://127.0.0.1:8000, tcp://[::1]:8000, unix:/run/app.sock)."
        )
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"  # noqa: S104 - as asked
    return "tcp", host, port_text


def bind(spec: str) -> list[Listener]:
    """Listening sockets for one bind spec (several for a host with several addresses)."""
    kind, where, port = parse_bind(spec)
    try:
        if kind == "unix":
            from pathlib import Path  # noqa: PLC0415 - `import tether` stays cheap

            path = Path(str(where))
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()  # a leftover of an earlier run: binding would fail
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(path))
                sock.listen(_BACKLOG)
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)  # noqa: FBT003 - the socket API
            return [Listener(spec, sock, unlink=path, backlog=_BACKLOG)]
        return [
            Listener(spec, sock, backlog=_BACKLOG)
            for sock in bind_tcp(str(where), int(port), _BACKLOG)
        ]
    except OSError as exc:
        raise BindError(f"cannot bind {spec}: {exc.strerror or exc}") from exc


def describe(sock: socket.socket) -> str:
    """`tcp://127.0.0.1:8000` or `unix:/run/app.sock` for a listening socket."""
    try:
        address = sock.getsockname()
    except OSError:
        return f"fd {sock.fileno()}"
    if sock.family == socket.AF_UNIX:
        return f"unix:{address.decode() if isinstance(address, bytes) else address}"
    if sock.family == socket.AF_INET6:
        return f"tcp://[{address[0]}]:{address[1]}"
    return f"tcp://{address[0]}:{address[1]}"


# A classic BPF program, attached to a listening TCP socket, that drops segments with
# SYN set and ACK clear (new connections) and lets everything else through: the
# handshakes already under way complete and queue, no new one starts. The socket
# filter sees the TCP header at offset 0; byte 13 holds the flags.
_BPF_LD_B_ABS = 0x30
_BPF_ALU_AND_K = 0x54
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_SYN_ONLY = (
    (_BPF_LD_B_ABS, 0, 0, 13),
    (_BPF_ALU_AND_K, 0, 0, 0x12),  # SYN | ACK
    (_BPF_JEQ_K, 0, 1, 0x02),  # exactly SYN: drop
    (_BPF_RET_K, 0, 0, 0),
    (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
)
_SO_ATTACH_FILTER = 26


def refuse_new_connections(sock: socket.socket) -> bool:
    """Stop a shared listening TCP socket from completing new handshakes (Linux).

    Used on the final shutdown, before the workers stop accepting: a SYN arriving from
    then on is dropped (the client retries, and by then the socket is closed: refused),
    while the handshakes already complete stay queued for the workers to accept. So no
    connection is accepted by the kernel and then reset because the last listener
    closed. Returns False where this is not possible (not Linux, not TCP).
    """
    if not sys.platform.startswith("linux") or sock.family not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return False
    import ctypes  # noqa: PLC0415 - only on the final shutdown of a pre-fork master

    code = b"".join(struct.pack("HBBI", *insn) for insn in _SYN_ONLY)
    program = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(_SYN_ONLY), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        logger.debug("could not attach the SYN filter to %s: %s", describe(sock), exc)
        return False
    return True


_SO_GET_FILTER = _SO_ATTACH_FILTER
_TCP_INFO_LISTEN = "8B6I"
"""The head of `struct tcp_info`: for a listening socket, `tcpi_unacked` (the 13th
field) is the accept queue's length and `tcpi_sacked` (the 14th) its limit."""


def _tcp_backlog(sock: Any) -> int | None:
    """The accept queue limit of a listening TCP socket (Linux), else None."""
    if not sys.platform.startswith("linux") or sock.family not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    return int(struct.unpack_from(_TCP_INFO_LISTEN, info)[13]) or None


def backlog_of(sock: socket.socket) -> int | None:
    """The backlog a server listening on `sock` should ask for, None if unknown.

    For a socket handed to this process (`listeners`), the one it was bound with
    or the one systemd gave it; for another listening TCP socket, what the kernel
    reports. A server given a socket calls `listen()` again with its own default
    (aiohttp 128, asyncio 100), which would shrink a shared socket's queue.
    """
    for item in _Process.listeners or []:
        if item.sock.fileno() != -1 and _same_socket(item.sock, sock):
            return item.backlog
    return _tcp_backlog(sock)


def _same_socket(one: socket.socket, other: socket.socket) -> bool:
    try:
        return os.fstat(one.fileno()).st_ino == os.fstat(other.fileno()).st_ino
    except OSError:
        return False


def refusing(sock: Any) -> bool:
    """Whether this listening socket takes no new connection any more (a final stop).

    True for a TCP socket that carries a socket filter (the pre-fork master attaches
    its SYN filter, `refuse_new_connections`, when it stops for good) and for a
    Unix socket whose file is gone (the master removes it then). During a reload
    neither happens: the socket keeps taking connections for the other workers.
    """
    family = sock.family
    if family in (socket.AF_INET, socket.AF_INET6):
        return _filter_length(sock.fileno()) > 0
    if family == socket.AF_UNIX:
        try:
            name = sock.getsockname()
        except OSError:
            return False
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        if not name or name.startswith("\0"):
            return False  # abstract: no file to remove
        return not os.path.exists(name)  # noqa: PTH110 - `import tether` stays cheap
    return False


def _filter_length(fd: int) -> int:
    """How many instructions the socket filter on `fd` has (0: none, or not Linux).

    Asked with a zero length, so the kernel only says the length and copies nothing:
    with a buffer, `SO_GET_FILTER` reads the buffer's size as a count of
    instructions and can write past it.
    """
    if not sys.platform.startswith("linux"):
        return 0
    import ctypes  # noqa: PLC0415 - only when a server stops

    libc = ctypes.CDLL(None, use_errno=True)
    length = ctypes.c_uint32(0)
    result = libc.getsockopt(fd, socket.SOL_SOCKET, _SO_GET_FILTER, None, ctypes.byref(length))
    return int(length.value) if result == 0 else 0


def _queued(fd: int) -> bool:
    """Whether connections wait in this listening socket's accept queue."""
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


_DRAIN_POLL = 0.005


async def stop_serving(server: asyncio.AbstractServer, *, drain_timeout: float = 10.0) -> None:
    """Close an asyncio server's listening sockets without losing a connection.

    The way to stop a server that serves on `listeners` (the servers of
    `tether.ext` do it themselves). First, when the process stops for good and its
    sockets refuse new connections (the pre-fork master's final stop, see
    `refusing`), the server keeps accepting until the connections already
    queued in the kernel are taken (at most `drain_timeout` seconds): a busy worker that
    stops last still serves what waited behind it, instead of the kernel resetting it.
    During a reload it stops accepting at once: the other workers take the queue.
    Then it stops accepting, lets the connections accepted in that same loop
    iteration reach their protocol (asyncio's `Server.close()` would fail them), and
    closes the listening sockets. When it returns, the protocol of every connection
    accepted has been told (`connection_made`); the connections are left to finish:

        async def stop(self) -> None:
            await tether.stop_serving(self.server)
            ...  # then wait for the requests in flight
    """
    if not (callable(getattr(server, "close", None)) and hasattr(server, "sockets")):
        raise TypeError(
            f"tether.stop_serving() takes the server asyncio.start_server() or "
            f"loop.create_server() returned, got {server!r} ({type(server).__name__})."
        )
    seconds = check_seconds("tether.stop_serving", "drain_timeout", drain_timeout)
    loop = asyncio.get_running_loop()
    sockets = list(getattr(server, "sockets", None) or ())
    deadline = loop.time() + seconds
    draining = [sock for sock in sockets if refusing(sock)]
    while draining and loop.time() < deadline:
        draining = [sock for sock in draining if _queued(sock.fileno())]
        if draining:
            await asyncio.sleep(_DRAIN_POLL)
    if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        # asyncio's selector loop accepts through a reader on the socket. Other loops
        # accept in their own code (uvloop in libuv, rloop in Rust) and are not asked:
        # rloop 0.5 aborts the process when told to remove a reader it did not add.
        for sock in sockets:
            with contextlib.suppress(Exception):
                loop.remove_reader(sock.fileno())
    # The accept callback of this iteration scheduled a task per connection that makes
    # its transport; one pass of the loop lets them attach to the server before close,
    # and one more lets each transport call its protocol's connection_made().
    await asyncio.sleep(0)
    server.close()
    await asyncio.sleep(0)


# ------------------------------------------------------------------ the service


class Sockets(BlockingService):
    """The master's listening sockets: bound from specs, or adopted from systemd.

    Started before the workers fork (they inherit the sockets), stopped after them.
    In the `stopping` stage, before any worker is told to stop, new connections are
    refused on every TCP socket bound here (see `refuse_new_connections`) and
    the master closes its own copies, so the addresses go away as soon as the last
    worker has drained, never leaving a connection accepted by the kernel with nobody
    to serve it. systemd's sockets are left as they are: systemd keeps them open, and
    what arrives after the last worker stopped waits for the next start.
    """

    name = "Sockets"

    def __init__(self, specs: Iterable[str] = (), *, systemd: bool = True) -> None:
        self.specs = list(specs)
        for spec in self.specs:
            parse_bind(spec)
        self.systemd = systemd
        self.listeners: list[Listener] = []

    def start(self) -> None:
        """Adopt systemd's sockets (if any were passed to this process), bind the specs."""
        found: list[Listener] = list(systemd_listeners()) if self.systemd else []
        try:
            for spec in self.specs:
                found.extend(bind(spec))
        except BaseException:
            _close(found)
            raise
        if not found:
            raise BindError(
                "nothing to listen on: give at least one bind (--bind tcp://127.0.0.1:8000) "
                "or start under systemd socket activation."
            )
        self.listeners = found
        logger.info("listening on %s", ", ".join(describe(item.sock) for item in self.listeners))

    def on_stopping(self) -> None:
        """Refuse new connections, then close the master's copies (workers still serve).

        A Unix socket's file is removed: a client connecting by path is refused at once.
        """
        for item in self.listeners:
            if not item.systemd:
                # systemd's sockets outlive the service: what arrives while it restarts
                # waits in their backlog for the next master, and a filter would stay
                # on them and drop every connection after the restart.
                refuse_new_connections(item.sock)
            if item.unlink is not None:
                with contextlib.suppress(OSError):
                    item.unlink.unlink()
                item.unlink = None
            item.sock.close()

    def stop(self) -> None:
        """Close what is still open and remove the Unix socket files bound here."""
        items, self.listeners = self.listeners, []
        _close(items)
        adopted = _Process.systemd
        if adopted is not None:  # closed now: not this process's sockets any more
            adopted[1][:] = [item for item in adopted[1] if item.sock.fileno() != -1]


def _close(items: Iterable[Listener]) -> None:
    for item in items:
        item.sock.close()
        if item.unlink is not None:
            with contextlib.suppress(OSError):
                item.unlink.unlink()
