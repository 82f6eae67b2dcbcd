"""Bind specs, systemd socket adoption and tether.listeners(), in this process."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

import tether
from tether._prefork._sockets import (
    BindError,
    Listener,
    Sockets,
    adopt_systemd,
    backlog_of,
    bind,
    parse_bind,
    refuse_new_connections,
    refusing,
    set_listeners,
)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("tcp://127.0.0.1:8000", ("tcp", "127.0.0.1", "8000")),
        ("127.0.0.1:0", ("tcp", "127.0.0.1", "0")),
        ("tcp://[::1]:80", ("tcp", "::1", "80")),
        ("tcp://:80", ("tcp", "0.0.0.0", "80")),  # noqa: S104 - the parsed value
        ("unix:/run/app.sock", ("unix", "/run/app.sock", "")),
        ("unix:///run/app.sock", ("unix", "/run/app.sock", "")),
    ],
)
def test_bind_specs_are_parsed(spec: str, parsed: tuple[str, str, str]) -> None:
    """tcp://HOST:PORT, HOST:PORT, [v6]:PORT and unix:/path are understood."""
    assert parse_bind(spec) == parsed


@pytest.mark.parametrize(
    "spec", ["", "udp://1.2.3.4:5", "tcp://localhost", "tcp://x:99999", "unix:"]
)
def test_bad_bind_specs_are_errors_naming_the_spec(spec: str) -> None:
    """A spec that is not tcp://HOST:PORT or unix:/path is a BindError that quotes it."""
    with pytest.raises(BindError) as caught:
        parse_bind(spec)
    assert repr(spec) in str(caught.value) or "bind takes" in str(caught.value)


def test_binding_a_taken_port_names_the_spec() -> None:
    """EADDRINUSE becomes a BindError naming what could not be bound."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(BindError, match=f"cannot bind tcp://127.0.0.1:{port}"):
            bind(f"tcp://127.0.0.1:{port}")
    finally:
        taken.close()


def test_unix_socket_left_over_is_replaced_and_removed_on_stop(tmp_path: Path) -> None:
    """A stale socket file is replaced; the Sockets service removes its files when it stops."""
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    with Sockets([f"unix:{path}"]) as sockets:
        [item] = sockets.listeners
        assert item.sock.getsockname() == str(path)
    assert not path.exists()


def test_sockets_without_anything_to_listen_on_fail_to_start() -> None:
    """No bind and no systemd socket: a clear error, nothing left open."""
    with pytest.raises(BindError, match="nothing to listen on"), Sockets([]):
        pass


def test_adopt_systemd_ignores_another_process_sockets() -> None:
    """LISTEN_PID of another process: nothing adopted, the variables left for it."""
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert adopt_systemd(env) == []
    assert "LISTEN_FDS" in env


def test_adopt_systemd_takes_fd_3_by_name_and_unsets_the_variables() -> None:
    """The socket on fd 3 is adopted with its name, close-on-exec; LISTEN_* removed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    saved = None
    try:
        saved = os.dup(3)
    except OSError:
        saved = None
    try:
        os.dup2(sock.fileno(), 3)
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
        [item] = adopt_systemd(env)
        assert env == {}
        assert item.name == "web"
        assert item.sock.fileno() == 3
        assert not os.get_inheritable(3)
        assert item.sock.getsockname() == sock.getsockname()
        item.sock.detach()
    finally:
        if saved is not None:
            os.dup2(saved, 3)
            os.close(saved)
        else:
            os.close(3)
        sock.close()


def test_adopt_systemd_refuses_a_descriptor_that_is_not_a_socket(tmp_path: Path) -> None:
    """fd 3 holding a file is an error naming fd 3."""
    saved = os.dup(3) if _open(3) else None
    handle = (tmp_path / "f").open("w")
    try:
        os.dup2(handle.fileno(), 3)
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
        with pytest.raises(BindError, match="fd 3 passed by systemd"):
            adopt_systemd(env)
    finally:
        if saved is not None:
            os.dup2(saved, 3)
            os.close(saved)
        else:
            os.close(3)
        handle.close()


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_listeners_returns_what_the_process_was_handed_by_name() -> None:
    """tether.listeners() lists the sockets handed over; a name selects among them."""
    first, second = socket.socket(), socket.socket()
    try:
        set_listeners([Listener("tcp://a:1", first), Listener("web", second)])
        assert tether.listeners() == [first, second]
        assert tether.listeners("web") == [second]
        assert tether.listeners("nope") == []
    finally:
        set_listeners([])
        first.close()
        second.close()


def test_refusing_new_connections_keeps_queued_ones_and_drops_new_syns() -> None:
    """After the SYN filter, a queued connection is still accepted; a new one does not complete."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    address = server.getsockname()
    queued = socket.create_connection(address, timeout=2)
    try:
        if not refuse_new_connections(server):
            pytest.skip("no SYN filter on this platform")
        server.settimeout(2)
        accepted, _ = server.accept()
        accepted.close()
        late = socket.socket()
        late.settimeout(0.3)
        with pytest.raises(TimeoutError):
            late.connect(address)
        late.close()
    finally:
        queued.close()
        server.close()


def test_prefork_checks_its_arguments() -> None:
    """Bad counts, a single string for bind, bad timeouts: errors before anything forks."""
    with pytest.raises(ValueError, match="workers= must be an integer >= 1"):
        tether.prefork("m:a", workers=0)
    with pytest.raises(TypeError, match="bind= takes a list"):
        tether.prefork("m:a", bind="tcp://127.0.0.1:1")
    with pytest.raises(BindError, match="udp://"):
        tether.prefork("m:a", bind=["udp://x:1"])
    with pytest.raises(ValueError, match="graceful_timeout="):
        tether.prefork("m:a", graceful_timeout=0)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sockets")


@linux_only
def test_a_tcp_socket_refuses_once_the_syn_filter_is_attached() -> None:
    """refusing() reads the kernel's state: no filter, then the master's SYN filter."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        assert not refusing(sock)
        assert refuse_new_connections(sock)
        assert refusing(sock)


def test_a_unix_socket_refuses_once_its_file_is_removed(tmp_path: Path) -> None:
    """The master removes the file on its final stop: nobody can connect by path."""
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen(16)
        assert not refusing(sock)
        path.unlink()
        assert refusing(sock)


@linux_only
def test_backlog_of_a_handed_socket_is_the_one_bound_even_after_another_listen() -> None:
    """A server calling listen(128) on a handed socket: the bound backlog is remembered."""
    [item] = bind("tcp://127.0.0.1:0")
    try:
        set_listeners([item])
        duplicate = item.sock.dup()
        duplicate.listen(128)
        assert backlog_of(duplicate) == 2048
        item.keep_backlog()
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen(77)
            assert backlog_of(other) == 77  # not handed: what the kernel says
        duplicate.close()
    finally:
        set_listeners([])
        item.sock.close()


async def test_stop_serving_takes_an_asyncio_server_only() -> None:
    """A wrong argument is named, with what to pass."""
    with pytest.raises(TypeError, match=r"takes the server asyncio.start_server\(\)"):
        await tether.stop_serving("server")  # type: ignore[arg-type]


async def test_stop_serving_checks_its_drain_timeout() -> None:
    """The bound must be finite seconds >= 0."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    try:
        with pytest.raises(ValueError, match=r"drain_timeout= must be a finite number"):
            await tether.stop_serving(server, drain_timeout=-1)
    finally:
        server.close()


async def test_stop_serving_closes_the_listening_socket_and_keeps_connections() -> None:
    """After stop_serving the port refuses; a connection it accepted still gets answered."""
    answered = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()
        answered.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\n")
    await writer.drain()
    await tether.stop_serving(server)
    assert not server.is_serving()
    assert await asyncio.wait_for(reader.readline(), 5) == b"ok\n"
    writer.close()
    await asyncio.wait_for(answered.wait(), 5)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
