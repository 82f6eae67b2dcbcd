"""The cost of the blocked-loop detector: time per event loop iteration, on and off.

Run by hand: ``python benchmarks/bench_blocking.py [--iterations 200000] [--repeats 7]``
(``--smoke`` for a quick pass).

A service's task turns the loop N times (``await asyncio.sleep(0)``: one iteration
each, the cheapest there is, so any cost per iteration shows as much as it can) under
``tether.run``, with the detector off and with ``blocking_timeout`` of 1 s, 0.1 s and
0.01 s. The detector does nothing per iteration: a timer every ``timeout / 4`` on the
loop and a thread that wakes about once per timeout; the table shows what that amounts
to, spread over the iterations, as the difference of medians with the detector off (runs
alternate, so a change of machine load hits every setting alike). Two clocks: the process's CPU time
(both threads; what the detector costs, little disturbed by other processes on a shared
machine) and wall time (what a user waits, noisier). Each event loop (asyncio, and uvloop
when installed) is measured on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import statistics
import sys
import time

import tether

SETTINGS: tuple[float | None, ...] = (None, 1.0, 0.1, 0.01)


class Spinner(tether.Service):
    """Turns the loop `iterations` times, timing it, then stops the process."""

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self.cpu = self.wall = 0.0

    @tether.task
    async def spin(self) -> None:
        await asyncio.sleep(0)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(self.iterations):
            await asyncio.sleep(0)
        self.cpu = time.process_time() - cpu
        self.wall = time.perf_counter() - wall
        self.request_stop()


def measure(loop: str, timeout: float | None, iterations: int) -> tuple[float, float]:
    """Nanoseconds per loop iteration in one run: CPU time, wall time."""
    spinner = Spinner(iterations)
    try:
        tether.run(spinner, loop=loop, log_level="error", blocking_timeout=timeout)
    except SystemExit as exited:
        if exited.code != 0:
            raise RuntimeError(f"the run ended with code {exited.code}") from None
    return spinner.cpu / iterations * 1e9, spinner.wall / iterations * 1e9


def label(timeout: float | None) -> str:
    return "off" if timeout is None else f"{timeout:g} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="a quick pass (2,000 iterations)")
    args = parser.parse_args()
    iterations = 2_000 if args.smoke else args.iterations
    repeats = 1 if args.smoke else args.repeats
    logging.getLogger("tether").setLevel(logging.CRITICAL)
    loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
    version = ".".join(map(str, sys.version_info[:3]))
    print(
        f"blocked-loop detector: time per loop iteration, {iterations:,} iterations "
        f"(median of {repeats}, python {version})"
    )
    print(
        f"{'loop':<9}{'blocking_timeout':>18}{'cpu ns/it':>11}{'overhead':>10}"
        f"{'wall ns/it':>12}{'overhead':>10}"
    )
    for loop in loops:
        samples: dict[float | None, list[tuple[float, float]]] = {t: [] for t in SETTINGS}
        for _ in range(repeats):
            for timeout in SETTINGS:
                samples[timeout].append(measure(loop, timeout, iterations))
        base_cpu = statistics.median(s[0] for s in samples[None])
        base_wall = statistics.median(s[1] for s in samples[None])
        for timeout in SETTINGS:
            cpu = statistics.median(s[0] for s in samples[timeout])
            wall = statistics.median(s[1] for s in samples[timeout])
            extra_cpu = "" if timeout is None else f"{cpu - base_cpu:+.1f}"
            extra_wall = "" if timeout is None else f"{wall - base_wall:+.1f}"
            print(
                f"{loop:<9}{label(timeout):>18}{cpu:>11.1f}{extra_cpu:>10}"
                f"{wall:>12.1f}{extra_wall:>10}"
            )


if __name__ == "__main__":
    main()
