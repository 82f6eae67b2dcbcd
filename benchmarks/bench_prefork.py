"""Pre-fork serving: tether's master and workers beside gunicorn, on one aiohttp app.

    python benchmarks/bench_prefork.py            # the full run (about a minute)
    python benchmarks/bench_prefork.py --smoke    # tiny, seconds
    python benchmarks/run.py --workloads prefork  # the same, in the benchmark table

Both serve ``prefork_app`` (an aiohttp handler answering its pid) with the same event
loop (uvloop when installed: tether's default and gunicorn's
``aiohttp.GunicornUVLoopWebWorker``; else asyncio and ``GunicornWebWorker``), no
access log, on 127.0.0.1. Measured, each in fresh server processes:

- requests per second with 1 and 2 workers: a load process (this script with
  ``--client``) keeps C keep-alive connections busy for a few seconds; implementations
  are interleaved within each repetition, the median is shown;
- respawn: SIGKILL a worker, time until a request is answered by a new pid;
- failed requests while the server receives SIGTERM, and during ten SIGHUP reloads
  (three in the table), under a load of one request per connection on saturated
  workers (``/work`` blocks each worker 2 ms per request, 32 connections keep the
  accept queue full): a connection refused is not a failure (nobody listens), a
  connection accepted and then reset or left unanswered is.

    python benchmarks/bench_prefork.py --drain --loop asyncio --repeats 3   # only those

The client shares the machine's cores with the servers, so a second worker helps only
as far as a core is free: read the numbers with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
UVLOOP = importlib.util.find_spec("uvloop") is not None


class Options:
    """The loop the servers run (``--loop``; uvloop when installed)."""

    loop = "uvloop" if UVLOOP else "asyncio"


def has_gunicorn() -> bool:
    return importlib.util.find_spec("gunicorn") is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_command(impl: str, workers: int, port: int) -> list[str]:
    if impl.startswith("tether"):
        preload = ["--preload"] if impl == "tether-preload" else []
        return [
            PYTHON,
            "-m",
            "tether",
            "run",
            "prefork_app:tether_app",
            "--workers",
            str(workers),
            "--bind",
            f"tcp://127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--log-format",
            "plain",
            "--graceful-timeout",
            "10",
            "--loop",
            Options.loop,
            *preload,
        ]
    worker = "GunicornUVLoopWebWorker" if Options.loop == "uvloop" else "GunicornWebWorker"
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "prefork_app:gunicorn_app",
        "--worker-class",
        f"aiohttp.worker.{worker}",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--graceful-timeout",
        "10",
    ]


class Served:
    """A server (master and workers) running in the background for one measurement."""

    def __init__(self, impl: str, workers: int) -> None:
        self.impl = impl
        self.workers = workers
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path[1:]])}
        # tether's master says READY=1 once every worker is ready: a worker killed before
        # that is a failed start (exit 3), so measurements begin after it.
        self.notify: socket.socket | None = None
        if impl == "tether":
            self.directory = tempfile.TemporaryDirectory(prefix="bench-prefork-")
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            address = os.path.join(self.directory.name, "notify")  # noqa: PTH118
            self.notify.bind(address)
            env["NOTIFY_SOCKET"] = address
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            server_command(impl, workers, self.port),
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Self:
        self.pids = self.wait_serving(self.workers, 30)
        if self.notify is not None:
            self.notify.settimeout(30)
            while b"READY=1" not in self.notify.recv(4096).split(b"\n"):
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.notify is not None:
            self.notify.close()
            self.directory.cleanup()

    def wait_serving(self, count: int, seconds: float, exclude: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
        """Until ``count`` distinct worker pids (not in ``exclude``) answered."""
        seen: set[int] = set()
        deadline = time.monotonic() + seconds
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.impl}: {len(seen)}/{count} workers answered")
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.impl} exited: {self.proc.stderr and self.proc.stderr.read()}"
                )
            pid = ask_pid(self.port)
            if pid is not None and pid not in exclude:
                seen.add(pid)
            elif pid is None:
                time.sleep(0.005)
        return seen


def ask_pid(port: int, timeout: float = 2.0) -> int | None:
    """One request on a new connection: the answering pid, or None if it failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except OSError:
        return None
    found = re.search(rb"hello from (\d+)", data)
    return int(found.group(1)) if found else None


# ------------------------------------------------------------------ the load client


async def _keepalive(port: int, seconds: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(found.group(1)) if found else 0)
            counts[0] += 1
    finally:
        writer.close()


async def _one_shot(port: int, until: asyncio.Event, tally: dict[str, int], path: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    while not until.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            tally["refused"] += 1
            await asyncio.sleep(0.005)
            continue
        except OSError:
            tally["connect_errors"] += 1
            continue
        try:
            writer.write(request)
            data = await asyncio.wait_for(reader.read(), 15)
            if b"hello from" in data:
                tally["ok"] += 1
            else:
                tally["failed"] += 1
                kind = "failed: " + (data[:40].decode(errors="replace") or "no answer (EOF)")
                tally[kind] = tally.get(kind, 0) + 1
        except (OSError, TimeoutError) as exc:
            tally["failed"] += 1
            kind = f"failed: {type(exc).__name__}"
            tally[kind] = tally.get(kind, 0) + 1
        finally:
            writer.close()


def client_main(mode: str, port: int, connections: int, seconds: float) -> int:
    """``--client``: print JSON with what the load saw."""
    if UVLOOP:
        import uvloop

        uvloop.install()
    if mode == "rps":

        async def rps() -> dict[str, Any]:
            counts = [0]
            began = time.perf_counter()
            await asyncio.gather(*(_keepalive(port, seconds, counts) for _ in range(connections)))
            return {"requests": counts[0], "seconds": time.perf_counter() - began}

        print(json.dumps(asyncio.run(rps())))
        return 0

    async def load() -> dict[str, Any]:
        # One request per connection until stdin closes (the parent says stop).
        tally = {"ok": 0, "refused": 0, "failed": 0, "connect_errors": 0}
        until = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), until.set)
        print("started", flush=True)
        path = "/work" if mode == "load-work" else "/"
        await asyncio.gather(*(_one_shot(port, until, tally, path) for _ in range(connections)))
        return tally

    print(json.dumps(asyncio.run(load())))
    return 0


def client(*args: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - this script
        [PYTHON, __file__, "--client", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class Load:
    """One-request-per-connection load in a separate process, stopped by closing its stdin."""

    def __init__(self, port: int, connections: int = 32, mode: str = "load-work") -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - this script
            [PYTHON, __file__, "--client", mode, str(port), str(connections), "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "started"

    def stop(self) -> dict[str, int]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return result


# ------------------------------------------------------------------ measurements


def measure_rps(impl: str, workers: int, seconds: float, connections: int) -> float:
    with Served(impl, workers) as served:
        if seconds >= 1:  # a warm-up run
            client("rps", str(served.port), str(connections), str(seconds / 4), timeout=60)
        result = client("rps", str(served.port), str(connections), str(seconds), timeout=60)
    return float(result["requests"] / result["seconds"])


def measure_respawn(impl: str) -> float:
    with Served(impl, 1) as served:
        [pid] = served.pids
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        served.wait_serving(1, 30, exclude={pid})
        return time.monotonic() - killed


def measure_term(impl: str, workers: int, settle: float) -> dict[str, int]:
    served = Served(impl, workers)
    with served:
        load = Load(served.port)
        time.sleep(settle)
        served.proc.send_signal(signal.SIGTERM)
        served.proc.wait(timeout=30)
        time.sleep(0.2)  # the load meets the closed port
        return load.stop()


def measure_hup(impl: str, workers: int, reloads: int, settle: float) -> dict[str, int]:
    with Served(impl, workers) as served:
        load = Load(served.port)
        current = served.pids
        for _ in range(reloads):
            time.sleep(settle)
            served.proc.send_signal(signal.SIGHUP)
            # Reloaded once every worker answering is new.
            fresh = served.wait_serving(workers, 30, exclude=current)
            current = current | fresh
        time.sleep(settle)
        return load.stop()


def run(smoke: bool) -> dict[str, Any]:
    """Every measurement; a dict for run.py's table (or this script's JSON)."""
    impls = ["tether"] + (["gunicorn"] if has_gunicorn() else [])
    seconds, repeats, connections = (0.2, 1, 8) if smoke else (3.0, 3, 32)
    results: dict[str, Any] = {
        "impls": impls,
        "respawn_impls": ["tether", "tether-preload", *impls[1:]],
        "loop": "uvloop" if UVLOOP else "asyncio",
        "connections": connections,
        "seconds": seconds,
        "missing": [] if has_gunicorn() else ["gunicorn"],
    }
    rps: dict[str, list[float]] = {f"{impl}/{w}": [] for impl in impls for w in (1, 2)}
    for rep in range(repeats):
        order = impls if rep % 2 == 0 else impls[::-1]
        for impl in order:
            for workers in (1, 2):
                value = measure_rps(impl, workers, seconds, connections)
                rps[f"{impl}/{workers}"].append(value)
                print(f"  rps {impl} {workers} worker(s): {value:,.0f}", file=sys.stderr)
    results["rps"] = {key: statistics.median(values) for key, values in rps.items()}
    respawn: dict[str, list[float]] = {impl: [] for impl in results["respawn_impls"]}
    for _ in range(1 if smoke else 5):
        for impl, times in respawn.items():
            times.append(measure_respawn(impl))
            print(f"  respawn {impl}: {times[-1] * 1e3:.0f} ms", file=sys.stderr)
    results["respawn"] = {impl: statistics.median(values) for impl, values in respawn.items()}
    settle = 0.1 if smoke else 1.0
    results["term"] = {impl: measure_term(impl, 2, settle) for impl in impls}
    results["hup"] = {impl: measure_hup(impl, 2, 1 if smoke else 3, settle) for impl in impls}
    results["loop"] = Options.loop
    for kind in ("term", "hup"):
        for impl, tally in results[kind].items():
            print(f"  {kind} {impl}: {tally}", file=sys.stderr)
    return results


def render(results: dict[str, Any]) -> list[str]:
    """The section of the benchmark table."""
    impls = results["impls"]
    lines = [
        (
            f"Pre-fork serving (one aiohttp app, {results['loop']}, {results['connections']} "
            f"keep-alive connections, {results['seconds']:g} s per run)"
        ),
        "",
        f"{'':28}" + "".join(f"{impl:>14}" for impl in impls),
    ]
    for workers in (1, 2):
        cells = "".join(f"{results['rps'][f'{impl}/{workers}']:>14,.0f}" for impl in impls)
        lines.append(f"{f'requests/s, {workers} worker(s)':28}{cells}")
    cells = "".join(f"{results['respawn'][impl] * 1e3:>11.0f} ms" for impl in impls)
    lines.append(f"{'respawn after SIGKILL':28}{cells}")
    preloaded = results["respawn"]["tether-preload"] * 1e3
    lines.append(f"{'  tether --preload':28}{preloaded:>11.0f} ms")
    for kind, label in (("term", "SIGTERM under load"), ("hup", "SIGHUP reloads under load")):
        cells = "".join(
            f"{results[kind][impl]['failed'] + results[kind][impl]['connect_errors']:>7} failed"
            for impl in impls
        )
        lines.append(f"{label:28}{cells}")
    oks = "".join(f"{results['term'][impl]['ok']:>14}" for impl in impls)
    lines.append(f"{'  (answered in the TERM run)':28}{oks}")
    lines.append(
        "respawn: SIGKILL of a worker until a new pid answers; tether imports the app in the "
        "new worker"
    )
    lines.append(
        "(aiohttp included) unless --preload; gunicorn's master has aiohttp imported "
        "for its worker class."
    )
    if results["missing"]:
        lines.append("not installed: gunicorn (pip install 'tether[bench]')")
    return lines


def drain(reloads: int, repeats: int) -> list[str]:
    """``--drain``: failed requests at SIGTERM and through ``reloads`` SIGHUPs, per run."""
    impls = ["tether"] + (["gunicorn"] if has_gunicorn() else [])
    lines = [
        (
            f"Failed requests under saturated load ({Options.loop}, 2 workers, 32 "
            f"connections on /work), {repeats} run(s) each: failed/answered"
        ),
        f"{'':24}" + "".join(f"{impl:>22}" for impl in impls),
    ]

    def term(impl: str) -> dict[str, int]:
        return measure_term(impl, 2, 1.0)

    def hup(impl: str) -> dict[str, int]:
        return measure_hup(impl, 2, reloads, 0.5)

    for label, measure in (("SIGTERM", term), (f"{reloads} SIGHUPs", hup)):
        for rep in range(repeats):
            cells = []
            for impl in impls:
                tally = measure(impl)
                failed = tally["failed"] + tally["connect_errors"]
                cells.append(f"{failed:>10} / {tally['ok']:<9}")
                print(f"  {label} {impl} run {rep + 1}: {tally}", file=sys.stderr)
            lines.append(f"{f'{label}, run {rep + 1}':24}" + "".join(f"{c:>22}" for c in cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--client", nargs=4, metavar=("MODE", "PORT", "CONNS", "SECONDS"))
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=Options.loop)
    parser.add_argument("--drain", action="store_true", help="only SIGTERM and SIGHUP failures")
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    if args.client:
        mode, port, conns, seconds = args.client
        return client_main(mode, int(port), int(conns), float(seconds))
    Options.loop = args.loop
    if args.drain:
        print("\n".join(drain(args.reloads, args.repeats)))
        return 0
    results = run(args.smoke)
    print(json.dumps(results, indent=2) if args.json else "\n".join(render(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
