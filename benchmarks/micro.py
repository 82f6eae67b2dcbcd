"""The small workloads: ``import tether``, ``add_task`` and timer lateness.

Each function runs inside one fresh worker process and returns plain numbers.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Coroutine
from typing import Any

# ------------------------------------------------------------------ import time

# Run in a new interpreter: the cost of `import asyncio`, then of importing the module on
# top, and every module that import brought in, with its file.
_IMPORT_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import asyncio
t1 = time.perf_counter()
after_asyncio = set(sys.modules)
import {module}
t2 = time.perf_counter()
added = {{
    name: getattr(sys.modules[name], "__file__", None)
    for name in set(sys.modules) - after_asyncio
}}
print(json.dumps({{"asyncio": t1 - t0, "module": t2 - t1, "added": added}}))
"""


def import_once(module: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Import ``module`` after asyncio in a fresh interpreter: seconds, and what it added.

    Returns the seconds ``import asyncio`` took, the seconds ``import module`` took on
    top of it, and the modules it brought in that are not in the standard library.
    """
    done = subprocess.run(  # noqa: S603 - this interpreter running our own probe
        [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    added: dict[str, str | None] = result.pop("added")
    result["third_party"] = sorted(m for m, path in added.items() if third_party(m, path, module))
    return result


def third_party(module: str, path: str | None, imported: str) -> bool:
    """Whether ``module`` (loaded from ``path``) is neither stdlib nor ``imported`` itself."""
    top = module.partition(".")[0]
    if top == imported.partition(".")[0] or top in sys.stdlib_module_names:
        return False
    # Private helpers of the standard library that are not in stdlib_module_names.
    stdlib = sysconfig.get_paths()["stdlib"]
    installed = "site-packages" in (path or "") or "dist-packages" in (path or "")
    return not (path and path.startswith(stdlib) and not installed)


# ------------------------------------------------------------------ add_task


async def _noop() -> None:
    return None


async def _settle(last: asyncio.Task[Any]) -> None:
    """Until every task spawned has finished, its bookkeeping included.

    Tasks run in the order spawned; tether's bookkeeping runs inside each task (and the
    raw-kept idiom's done callback is queued before the one that wakes us), so when the
    last task is done, every task's bookkeeping is.
    """
    await last


async def _raw_round(count: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    tasks = [loop.create_task(_noop()) for _ in range(count)]
    spawned = time.perf_counter()
    await _settle(tasks[-1])
    return spawned - began, time.perf_counter() - spawned


async def _kept_round(count: int, kept: set[asyncio.Task[None]]) -> tuple[float, float]:
    loop = asyncio.get_running_loop()

    def spawn() -> asyncio.Task[None]:
        task = loop.create_task(_noop())
        kept.add(task)
        task.add_done_callback(kept.discard)
        return task

    began = time.perf_counter()
    tasks = [spawn() for _ in range(count)]
    spawned = time.perf_counter()
    await _settle(tasks[-1])
    return spawned - began, time.perf_counter() - spawned


async def _tether_rounds(count: int, rounds: int) -> list[tuple[float, float]]:
    import tether

    class Owner(tether.Service):
        pass

    results = []
    async with Owner() as owner:
        for _ in range(rounds):
            began = time.perf_counter()
            tasks = [owner.add_task(_noop()) for _ in range(count)]
            spawned = time.perf_counter()
            await _settle(tasks[-1])
            results.append((spawned - began, time.perf_counter() - spawned))
    return results


async def _raw_rounds(count: int, rounds: int) -> list[tuple[float, float]]:
    return [await _raw_round(count) for _ in range(rounds)]


async def _kept_rounds(count: int, rounds: int) -> list[tuple[float, float]]:
    kept: set[asyncio.Task[None]] = set()
    return [await _kept_round(count, kept) for _ in range(rounds)]


def add_task(impl: str, count: int, rounds: int) -> dict[str, float]:
    """Median seconds per task to spawn ``count`` trivial tasks, and for them to finish.

    ``impl``: "tether" (``Service.add_task``), "raw" (``loop.create_task``, the floor of
    the target), or "raw-kept" (create_task with the asyncio documentation's idiom for
    keeping a reference: a set, and a done callback that discards the task; for reference).
    """
    runner: Coroutine[Any, Any, list[tuple[float, float]]]
    if impl == "tether":
        runner = _tether_rounds(count, rounds)
    elif impl == "raw-kept":
        runner = _kept_rounds(count, rounds)
    else:
        runner = _raw_rounds(count, rounds)
    results = asyncio.run(runner)
    # The first round pays for warming up the allocator and the code paths: drop it.
    kept = results[1:] or results
    spawn = statistics.median(s for s, _ in kept) / count
    complete = statistics.median(c for _, c in kept) / count
    total = statistics.median(s + c for s, c in kept) / count
    return {"spawn": spawn, "complete": complete, "total": total}


# ------------------------------------------------------------------ timers


def _lateness(
    ticks: list[float], origin: float, interval: float, due: list[int]
) -> dict[str, float]:
    """Mean lateness, and the last tick's; tick n is due at origin + n x interval."""
    late = [t - (origin + n * interval) for n, t in zip(due, ticks, strict=True)]
    return {"mean": statistics.fmean(late), "last": late[-1], "ticks": float(len(late))}


def _consecutive(ticks: list[float]) -> list[int]:
    return list(range(1, len(ticks) + 1))


def _fixed_schedule(ticks: list[float], origin: float, interval: float) -> list[int]:
    """Which tick each run was, under tether's rule: a late run skips the ticks it missed.

    Without this, one tick delayed past a whole period (a loaded machine) would shift
    every later tick onto an earlier deadline and look like drift.
    """
    due = []
    n = 1
    for t in ticks:
        due.append(n)
        n += 1
        # The trivial tick ends as it begins: past the next deadline, tether skips ahead.
        if t > origin + n * interval:
            n = math.floor((t - origin) / interval) + 1
    return due


async def _deadline_loop(interval: float, count: int) -> dict[str, float]:
    """The hand-written reference: sleep to each absolute deadline t0 + n x interval."""
    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    origin = loop.time()
    for n in range(1, count + 1):
        await asyncio.sleep(origin + n * interval - loop.time())
        ticks.append(loop.time())
    return _lateness(ticks, origin, interval, _consecutive(ticks))


async def _naive_loop(interval: float, count: int) -> dict[str, float]:
    """What drift looks like: sleep(interval) after each tick, so lateness accumulates."""
    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    origin = loop.time()
    for _ in range(count):
        await asyncio.sleep(interval)
        ticks.append(loop.time())
    return _lateness(ticks, origin, interval, _consecutive(ticks))


async def _tether_timer(interval: float, count: int) -> dict[str, float]:
    import tether

    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    enough = loop.create_future()

    class Ticker(tether.Service):
        @tether.timer(interval)
        async def tick(self) -> None:
            ticks.append(loop.time())
            if len(ticks) == count and not enough.done():
                enough.set_result(None)

        async def start(self) -> None:
            self.hook_done = loop.time()

    ticker = Ticker()
    async with ticker:
        await asyncio.wait_for(enough, timeout=count * interval * 10 + 5)
        origin = _timer_origin(ticker)
    t0 = ticker.hook_done if origin is None else origin
    ticks = ticks[:count]
    due = _fixed_schedule(ticks, t0, interval)
    result = _lateness(ticks, t0, interval, due)
    result["skipped"] = float(due[-1] - len(due))
    # 1.0 when t0 is the timer's own origin; 0.0 when it had to fall back to the end of
    # the start hook (slightly earlier, which overstates lateness by the spawn latency).
    result["exact_origin"] = float(origin is not None)
    return result


def _timer_origin(service: Any) -> float | None:
    """The t0 of the service's timer: the ``origin`` local of its timer loop, if it has one.

    Read from the suspended coroutine's frame, because the engine keeps no public record
    of it; ``None`` if the engine's timer loop no longer has a local of that name.
    """
    import tether

    for task in tether.status(service).tasks:
        frame = getattr(task.get_coro(), "cr_frame", None)
        origin = None if frame is None else frame.f_locals.get("origin")
        if isinstance(origin, float):
            return origin
    return None


def timer(impl: str, interval: float, count: int) -> dict[str, float]:
    """Lateness (seconds) of ``count`` ticks at ``interval``: mean, and the last tick's."""
    if impl == "tether":
        return asyncio.run(_tether_timer(interval, count))
    if impl == "deadline-loop":
        return asyncio.run(_deadline_loop(interval, count))
    return asyncio.run(_naive_loop(interval, count))
