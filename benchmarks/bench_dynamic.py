"""Dynamic supervision: adding and removing N children of a running tether.Supervisor.

Run by hand: ``python benchmarks/bench_dynamic.py [--children 10000] [--repeats 3]``
(``--smoke`` for a quick pass).

Each child is a trivial service (hooks that return at once) restarted `TEMPORARY`, as one
per connection or job would be. Measured, as the median of the repeats:

* ``add``: ``await supervisor.start_child(child)`` for N instances, one after another;
* ``add (container)``: the same with a class, built by the supervisor's container with
  its dependency (a shared service) injected;
* ``remove``: ``await supervisor.terminate_child(child)`` for the N children, in random
  order (a connection ends whenever it ends);
* ``exit``: the N children each call ``request_stop()``: the supervisor hears each
  exit, stops the child and removes it, one exit at a time as OTP does; timed from the
  first request to the last removal;
* ``stop``: leaving the supervisor with N children running (they stop one at a time,
  the last added first);
* ``floor``: what a person writes knowing the shape: a dict of the services, each
  start hook awaited and the service stored, then each stop hook awaited and the
  service dropped. No supervision, no order, no exits.

Memory per child is measured with tracemalloc: what N running children hold, divided by
N (the child object itself included), and what is left once they were all removed
(nothing should be: a removed child is not kept alive).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import tether


class Shared(tether.Service):
    """What every child depends on (a pool, a config): running once, shared."""


class Child(tether.Service):
    """A trivial child: its hooks return at once."""

    restart = tether.Restart.TEMPORARY

    def __init__(self, shared: Shared | None = None, n: int = 0) -> None:
        self.shared = shared
        self.n = n

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class Counted(Child):
    """Counts its stops, setting `all_stopped` at the `expected`-th."""

    stops = 0
    expected = 0
    all_stopped: asyncio.Event | None = None

    async def stop(self) -> None:
        Counted.stops += 1
        if Counted.stops == Counted.expected and Counted.all_stopped is not None:
            Counted.all_stopped.set()


Timed = Callable[[int], Awaitable[float]]


async def add_and_remove(n: int) -> tuple[float, float]:
    supervisor = tether.Supervisor()
    async with supervisor:
        children = [Child(n=i) for i in range(n)]
        began = time.perf_counter()
        for child in children:
            await supervisor.start_child(child)
        added = time.perf_counter() - began
        random.Random(n).shuffle(children)
        began = time.perf_counter()
        for child in children:
            await supervisor.terminate_child(child)
        removed = time.perf_counter() - began
        assert not supervisor.which_children()
    return added, removed


async def add_with_container(n: int) -> float:
    container = tether.Container()
    shared = container.get(Shared)
    supervisor = tether.Supervisor([shared], container=container)
    async with supervisor:
        began = time.perf_counter()
        for i in range(n):
            await supervisor.start_child(Child, n=i)
        return time.perf_counter() - began


async def exits(n: int) -> float:
    supervisor = tether.Supervisor()
    Counted.stops, Counted.expected, Counted.all_stopped = 0, n, asyncio.Event()
    async with supervisor:
        children = [await supervisor.start_child(Counted(n=i)) for i in range(n)]
        began = time.perf_counter()
        for child in children:
            child.request_stop()
        await asyncio.wait_for(Counted.all_stopped.wait(), 600)
        for _ in range(100):  # the last one is removed just after its stop
            if not supervisor.which_children():
                break
            await asyncio.sleep(0)
        return time.perf_counter() - began


async def stop_all(n: int) -> float:
    supervisor = tether.Supervisor()
    await supervisor.__aenter__()
    for i in range(n):
        await supervisor.start_child(Child(n=i))
    began = time.perf_counter()
    await supervisor.__aexit__(None, None, None)
    return time.perf_counter() - began


async def floor(n: int) -> tuple[float, float]:
    running: dict[int, Child] = {}
    children = [Child(n=i) for i in range(n)]
    began = time.perf_counter()
    for child in children:
        await child.start()
        running[id(child)] = child
    added = time.perf_counter() - began
    random.Random(n).shuffle(children)
    began = time.perf_counter()
    for child in children:
        await child.stop()
        del running[id(child)]
    return added, time.perf_counter() - began


async def memory(n: int) -> tuple[float, float]:
    """Bytes held per running child, and per child once all were removed."""
    supervisor = tether.Supervisor()
    async with supervisor:
        await supervisor.start_child(Child())  # warm up the classes' caches
        await supervisor.terminate_child(supervisor.which_children()[0])
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            await supervisor.start_child(Child(n=i))
        gc.collect()
        running = tracemalloc.get_traced_memory()[0]
        for child in supervisor.which_children():
            await supervisor.terminate_child(child)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    return (running - before) / n, (after - before) / n


def median_of(repeats: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a quick pass (500 children, once)")
    args = parser.parse_args()
    n = 500 if args.smoke else args.children
    repeats = 1 if args.smoke else args.repeats
    logging.getLogger("tether").setLevel(logging.CRITICAL)
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"dynamic supervision, {n} children (median of {repeats}, python {version})")
    print(f"{'workload':<18}{'per second':>12}{'us per child':>14}")

    def row(label: str, seconds: float) -> None:
        print(f"{label:<18}{n / seconds:>12,.0f}{seconds / n * 1e6:>14.1f}")

    pairs = [asyncio.run(add_and_remove(n)) for _ in range(repeats)]
    row("add", statistics.median(p[0] for p in pairs))
    row("add (container)", median_of(repeats, lambda: asyncio.run(add_with_container(n))))
    row("remove", statistics.median(p[1] for p in pairs))
    row("exit", median_of(repeats, lambda: asyncio.run(exits(n))))
    row("stop", median_of(repeats, lambda: asyncio.run(stop_all(n))))
    floors = [asyncio.run(floor(n)) for _ in range(repeats)]
    row("floor add", statistics.median(f[0] for f in floors))
    row("floor remove", statistics.median(f[1] for f in floors))
    held, left = asyncio.run(memory(n))
    print(f"memory: {held:,.0f} bytes per running child, {left:,.1f} left per removed child")


if __name__ == "__main__":
    main()
