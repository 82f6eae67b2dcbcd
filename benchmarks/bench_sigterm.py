"""Time from SIGTERM (and from a second SIGTERM) to process exit, under `tether.run`.

Run by hand: ``python benchmarks/bench_sigterm.py [--runs 30] [--services 50]``.

Each run starts a real process with N idle services under ``tether.run`` and a fake
systemd (an AF_UNIX datagram socket) to learn the exact moment it is ready, sends
SIGTERM, and measures until ``waitpid`` returns. That includes the stop of every
service, closing the loop, the exit stage and interpreter shutdown: what a service
manager waits for. The second measurement gives one service a stop hook that never
returns and times the second SIGTERM to exit. Median and p95 are printed per loop.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = """
import asyncio, math, sys
import tether

class Idle(tether.Service):
    pass

class Stuck(tether.Service):
    graceful_shutdown_timeout = math.inf
    async def stop(self):
        await asyncio.sleep(3600)

class Root(tether.Service):
    def __init__(self, deps):
        self.deps = deps
    @property
    def dependencies(self):
        return self.deps

count, stuck, loop, level = int(sys.argv[1]), sys.argv[2] == "stuck", sys.argv[3], sys.argv[4]
deps = [Idle() for _ in range(count - 1)]
if stuck:
    deps[0] = Stuck()
tether.run(Root([deps]), loop=loop, log_level=level, log_format="plain")
"""


def _wait_for(sock: socket.socket, field: bytes, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if ready and field in sock.recv(65536).split(b"\n"):
            return
    raise TimeoutError(f"{field!r} never arrived")


def _exited(pidfd: int, since: float, seconds: float = 30) -> float:
    """Seconds from ``since`` until the process behind ``pidfd`` exits (woken by the
    kernel, not by polling: ``Popen.wait(timeout)`` sleeps in growing steps)."""
    ready, _, _ = select.select([pidfd], [], [], seconds)
    if not ready:
        raise TimeoutError("the process did not exit")
    return time.perf_counter() - since


def one_run(directory: Path, services: int, loop: str, level: str, *, stuck: bool) -> float:
    """Seconds from the (last) SIGTERM to the process's exit."""
    path = directory / f"notify-{time.monotonic_ns()}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path)}
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and program
            [
                sys.executable,
                "-c",
                PROGRAM,
                str(services),
                "stuck" if stuck else "idle",
                loop,
                level,
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        pidfd = os.pidfd_open(proc.pid)
        try:
            _wait_for(sock, b"READY=1")
            proc.send_signal(signal.SIGTERM)
            if stuck:
                _wait_for(sock, b"STOPPING=1")
                time.sleep(0.05)  # let the stop hook begin: we time the second signal
                proc.send_signal(signal.SIGTERM)
            sent = time.perf_counter()
            took = _exited(pidfd, sent)
            code = proc.wait()
        finally:
            os.close(pidfd)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        path.unlink(missing_ok=True)
    expected = 70 if stuck else 0
    if code != expected:
        raise RuntimeError(f"exit code {code}, expected {expected}")
    return took


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--loops", default="asyncio,uvloop", help="comma-separated")
    parser.add_argument(
        "--log-level", default="warning", help="info logs every lifecycle event (to /dev/null)"
    )
    args = parser.parse_args()
    loops = [name for name in args.loops.split(",") if name]
    print(
        f"{args.services} services, {args.runs} runs each, log level {args.log_level}, "
        f"python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for loop in loops:
            if loop == "uvloop":
                try:
                    import uvloop  # noqa: F401
                except ImportError:
                    print("uvloop: not installed, skipped")
                    continue
            graceful = [
                one_run(directory, args.services, loop, args.log_level, stuck=False)
                for _ in range(args.runs)
            ]
            forced = [
                one_run(directory, args.services, loop, args.log_level, stuck=True)
                for _ in range(args.runs)
            ]
            print(f"{loop:8} SIGTERM to exit (graceful)   {summary(graceful)}")
            print(f"{loop:8} second SIGTERM to exit (70)  {summary(forced)}")


if __name__ == "__main__":
    main()
