"""systemd notify: addresses, datagrams, the watchdog interval, STATUS from events."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

import tether
from tests.conftest import Log, Node, bounded
from tether._process._notify import Notifier, Progress, watchdog_interval


def receiver(tmp_path: Path, abstract: bool) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"tether-unit-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "n.sock")
        sock.bind(address)
    sock.settimeout(5)
    return sock, address


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_one_message_is_one_datagram(tmp_path: Path, abstract: bool) -> None:
    """Fields of one message travel together, newline-separated, to path or @name."""
    sock, address = receiver(tmp_path, abstract)
    with sock:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
        assert notifier is not None
        notifier.reloading()
        data = sock.recv(4096).decode().split("\n")
        notifier.close()
    assert data[0] == "RELOADING=1"
    assert data[1].startswith("MONOTONIC_USEC=")
    assert int(data[1].split("=")[1]) <= time_usec()


def time_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_no_socket_no_notifier() -> None:
    """Without NOTIFY_SOCKET there is nothing to notify."""
    assert Notifier.from_environment({}) is None


def test_unsupported_address_disables_notify_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An address that is neither a path nor @name is reported, not fatal."""
    assert Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert "neither a path" in caplog.text


def test_a_vanished_manager_does_not_break_the_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sending to a socket nobody listens on fails quietly (logged once)."""
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.send("READY=1") is False
    assert notifier.send("READY=1") is False
    notifier.close()
    assert caplog.text.count("systemd notify to") == 1


def test_stopping_is_sent_once(tmp_path: Path) -> None:
    """STOPPING=1 goes out once however many parts of the runner ask for it."""
    sock, address = receiver(tmp_path, abstract=False)
    with sock:
        notifier = Notifier(address)
        notifier.stopping("stopping: SIGTERM")
        notifier.stopping("stopping: again")
        notifier.send("X-END=1")
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping: SIGTERM"
        assert sock.recv(4096) == b"X-END=1"
        notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_when_it_is_ours(
    env: dict[str, str], expected: float | None
) -> None:
    """Pings every WATCHDOG_USEC/2, only when WATCHDOG_PID is unset or this process."""
    assert watchdog_interval(env) == expected


async def test_progress_reports_what_is_still_starting(tmp_path: Path, log: Log) -> None:
    """STATUS lines follow the start: the stage, then progress naming what is busy."""
    sock, address = receiver(tmp_path, abstract=False)
    sock.setblocking(False)  # noqa: FBT003 - the socket API
    notifier = Notifier(address)
    release = asyncio.Event()

    class Slow(Node):
        async def start(self) -> None:
            await release.wait()

    loop = asyncio.get_running_loop()
    progress = Progress(notifier, loop)
    root = Node("root", log, [Slow("slow", log)])
    try:
        with tether.subscribe(progress):
            async with asyncio.TaskGroup() as group:
                entered = group.create_task(root.__aenter__())
                first = await bounded(loop.sock_recv(sock, 4096))
                update = await bounded(loop.sock_recv(sock, 4096))
                release.set()
            await entered
            await root.__aexit__(None, None, None)
    finally:
        notifier.close()
        sock.close()
    assert first == b"STATUS=start: 0/2 services"
    assert update == b"STATUS=start: 0/2 services; in progress: Slow"
