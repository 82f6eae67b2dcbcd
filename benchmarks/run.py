"""tether's benchmarks beside hand-written asyncio and, where installed, facet, mode, aiomisc.

    python benchmarks/run.py            # the full table (several minutes)
    python benchmarks/run.py --smoke    # every workload at tiny sizes, in seconds
    python benchmarks/run.py --json > results.json   # the numbers instead of the table
    python benchmarks/run.py --table results.json    # the table of numbers recorded so

Method: every measurement runs in a fresh worker process (this script with ``--worker``)
so that garbage and memory left by one do not skew the next; implementations are
interleaved within each repetition, and the table shows medians. Start/stop ratios are
against the *bare* floor: what a person writes by hand knowing the shape (a chain
awaited in sequence, a fan's leaves in one gather, a tree one gather per level). The
generic raw-asyncio version (a task per service awaiting its dependencies' tasks) is
shown beside it for reference. Hooks run twice: suspending once each (as hooks doing
I/O do), and never suspending.

Progress goes to stderr; the table (or the JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import bench_prefork
import micro
import startstop
from table import render

HERE = Path(__file__).resolve()

# Workers run as a deployed program does, with bytecode cached: otherwise (with
# PYTHONDONTWRITEBYTECODE set, as some shells and CI images do) every fresh interpreter
# compiles tether from source and `import tether` measures the compiler.
WORKER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
WORKLOADS = ("startstop", "memory", "import", "add_task", "timer", "prefork")
SMOKE_SKIPS = ("prefork",)
"""Workloads a plain --smoke run leaves out (tens of seconds of servers); name them to run."""


@dataclass
class Plan:
    """How much to run: sizes, repeats and time limits."""

    smoke: bool
    sizes: list[int]
    shapes: list[str]
    hooks: list[str]
    impls: list[str]
    repeats: dict[int, int]
    timeout: float
    workloads: list[str]
    import_runs: int
    add_task_count: int
    add_task_rounds: int
    add_task_repeats: int
    timer_interval: float
    timer_ticks: int
    timer_repeats: int
    missing: list[str] = field(default_factory=list)

    @classmethod
    def full(cls) -> Plan:
        return cls(
            smoke=False,
            sizes=[1_000, 10_000, 100_000],
            shapes=list(startstop.SHAPES),
            hooks=list(startstop.HOOKS),
            impls=list(startstop.IMPLS),
            # More repeats where one run is short and noise weighs more.
            repeats={1_000: 9, 10_000: 5, 100_000: 3},
            timeout=30.0,
            workloads=list(WORKLOADS),
            import_runs=30,
            add_task_count=10_000,
            add_task_rounds=15,
            add_task_repeats=5,
            timer_interval=0.01,
            timer_ticks=300,
            timer_repeats=3,
        )

    @classmethod
    def tiny(cls) -> Plan:
        return cls(
            smoke=True,
            sizes=[50],
            shapes=list(startstop.SHAPES),
            hooks=list(startstop.HOOKS),
            impls=list(startstop.IMPLS),
            repeats={},
            timeout=30.0,
            workloads=[w for w in WORKLOADS if w not in SMOKE_SKIPS],
            import_runs=3,
            add_task_count=200,
            add_task_rounds=3,
            add_task_repeats=1,
            timer_interval=0.01,
            timer_ticks=5,
            timer_repeats=1,
        )

    @classmethod
    def recorded(cls, fields: dict[str, Any]) -> Plan:
        """The plan stored in a ``--json`` record (JSON keys are strings; repeats are ints)."""
        repeats = {int(n): r for n, r in fields.pop("repeats").items()}
        return cls(**fields, repeats=repeats)

    def repeats_for(self, n: int) -> int:
        return self.repeats.get(n, 1 if self.smoke else 5)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ workers


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this (fresh) process."""
    kind = spec["workload"]
    if kind == "startstop":
        return startstop.measure(spec["impl"], spec["shape"], spec["n"], spec["hooks"])
    if kind == "memory":
        return startstop.memory(spec["impl"], spec["shape"], spec["n"])
    if kind == "add_task":
        return micro.add_task(spec["impl"], spec["count"], spec["rounds"])
    if kind == "timer":
        return micro.timer(spec["impl"], spec["interval"], spec["ticks"])
    raise ValueError(f"unknown workload {kind!r}")


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One measurement in a new interpreter; ``{"error": ...}`` if it failed or ran over."""
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter running this script
            [sys.executable, str(HERE), "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=WORKER_ENV,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"> {timeout:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return {"error": last[:200]}


def _worker_main(raw: str) -> int:
    spec = json.loads(raw)
    try:
        result = worker(spec)
    except RecursionError:
        # Say which limit was hit; the traceback of a deep recursion is useless here.
        print(json.dumps({"error": "RecursionError"}))
        return 0
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------ start and stop


def rotated(items: list[str], by: int) -> list[str]:
    """``items`` starting at a different one each repetition, to spread position bias."""
    if not items:
        return items
    k = by % len(items)
    return items[k:] + items[:k]


def bench_startstop(plan: Plan) -> list[dict[str, Any]]:
    """Every (hooks, shape, N, implementation): its runs, medians, or why it has none."""
    rows: list[dict[str, Any]] = []
    impls = [i for i in plan.impls if startstop.installed(i)]
    plan.missing = [i for i in plan.impls if i not in impls]
    for hooks in plan.hooks:
        for shape in plan.shapes:
            gave_up: dict[str, str] = {}  # impl -> why, carried to the larger sizes
            for n in plan.sizes:
                runs: dict[str, list[dict[str, float]]] = {i: [] for i in impls}
                errors: dict[str, str] = {}
                for impl, why in gave_up.items():
                    errors[impl] = f"({why})"
                repeats = plan.repeats_for(n)
                for rep in range(repeats):
                    for impl in rotated(impls, rep):
                        if impl in errors:
                            continue
                        spec = {
                            "workload": "startstop",
                            "impl": impl,
                            "shape": shape,
                            "n": n,
                            "hooks": hooks,
                        }
                        result = run_worker(spec, plan.timeout)
                        label = f"  {hooks:7} {shape:5} {n:>7,} {impl:11} {rep + 1}/{repeats}"
                        if "error" in result:
                            errors[impl] = gave_up[impl] = result["error"]
                            progress(f"{label}: {errors[impl]}")
                            continue
                        runs[impl].append(result)
                        total = result["start"] + result["stop"]
                        progress(f"{label}: {total * 1e3:9.1f} ms")
                rows.extend(_startstop_rows((hooks, shape, n), impls, runs, errors))
    return rows


def bench_memory(plan: Plan) -> list[dict[str, Any]]:
    """Bytes kept per running service, tether beside the bare floor, at the middle size."""
    n = plan.sizes[len(plan.sizes) // 2]
    rows = []
    for shape in plan.shapes:
        for impl in ("raw-bare", "tether"):
            result = run_worker(
                {"workload": "memory", "impl": impl, "shape": shape, "n": n}, plan.timeout
            )
            shown = result.get("error") or f"{result['bytes']:.0f} bytes"
            progress(f"  memory {shape:5} {n:>7,} {impl:11}: {shown}")
            rows.append({"shape": shape, "n": n, "impl": impl, **result})
    return rows


def _startstop_rows(
    key: tuple[str, str, int],
    impls: list[str],
    runs: dict[str, list[dict[str, float]]],
    errors: dict[str, str],
) -> list[dict[str, Any]]:
    hooks, shape, n = key
    medians: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for impl in impls:
        row: dict[str, Any] = {
            "hooks": hooks,
            "shape": shape,
            "n": n,
            "impl": impl,
            "runs": runs[impl],
        }
        if impl in errors:
            row["error"] = errors[impl]
        elif runs[impl]:
            row["start"] = statistics.median(r["start"] for r in runs[impl])
            row["stop"] = statistics.median(r["stop"] for r in runs[impl])
            row["total"] = medians[impl] = statistics.median(
                r["start"] + r["stop"] for r in runs[impl]
            )
        rows.append(row)
    for row in rows:
        if "total" in row:
            for floor in startstop.FLOORS:
                if floor in medians:
                    row[f"x_{floor}"] = row["total"] / medians[floor]
    return rows


# ------------------------------------------------------------------ micro workloads


def bench_import(plan: Plan) -> dict[str, Any]:
    """``import tether`` after ``import asyncio``, each run in a fresh interpreter."""
    runs = []
    # A first, uncounted run compiles and caches tether's bytecode.
    for k in range(-1, plan.import_runs):
        try:
            result = micro.import_once("tether", WORKER_ENV, plan.timeout)
        except (subprocess.SubprocessError, ValueError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"[:200]}
        if k >= 0:
            runs.append(result)
            progress(f"  import {k + 1}/{plan.import_runs}: +{result['module'] * 1e3:.1f} ms")
    return {
        "runs": runs,
        "asyncio": statistics.median(r["asyncio"] for r in runs),
        "tether": statistics.median(r["module"] for r in runs),
        "third_party": sorted({m for r in runs for m in r["third_party"]}),
    }


# Which numbers in a worker's result are seconds (the others are counts or flags).
SECONDS = {"spawn", "complete", "total", "mean", "last"}


def _interleaved(
    impls: list[str], repeats: int, spec: Callable[[str], dict[str, Any]], plan: Plan, label: str
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {i: [] for i in impls}
    for rep in range(repeats):
        for impl in rotated(impls, rep):
            result = run_worker(spec(impl), plan.timeout)
            runs[impl].append(result)
            shown = ", ".join(
                f"{k} {v * 1e6:.1f} us" if k in SECONDS else f"{k} {v:g}" for k, v in result.items()
            )
            progress(f"  {label} {impl} {rep + 1}/{repeats}: {shown}")
    return runs


def _medians(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "no runs", "runs": runs}
    return {"runs": runs} | {key: statistics.median(r[key] for r in ok) for key in keys}


def bench_add_task(plan: Plan) -> dict[str, Any]:
    def spec(impl: str) -> dict[str, Any]:
        return {
            "workload": "add_task",
            "impl": impl,
            "count": plan.add_task_count,
            "rounds": plan.add_task_rounds,
        }

    impls = ["raw", "tether", "raw-kept"]
    runs = _interleaved(impls, plan.add_task_repeats, spec, plan, "add_task")
    keys = ("spawn", "complete", "total")
    return {impl: _medians(r, keys) for impl, r in runs.items()} | {"count": plan.add_task_count}


def bench_timer(plan: Plan) -> dict[str, Any]:
    def spec(impl: str) -> dict[str, Any]:
        return {
            "workload": "timer",
            "impl": impl,
            "interval": plan.timer_interval,
            "ticks": plan.timer_ticks,
        }

    impls = ["deadline-loop", "tether", "naive-loop"]
    runs = _interleaved(impls, plan.timer_repeats, spec, plan, "timer")
    result: dict[str, Any] = {impl: _medians(r, ("mean", "last")) for impl, r in runs.items()}
    return result | {"interval": plan.timer_interval, "ticks": plan.timer_ticks}


# ------------------------------------------------------------------ main


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _versions() -> dict[str, str]:
    versions = {}
    for dist in ("tether", "facet", "mode-streaming", "aiomisc"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--table", metavar="FILE", help="print the table of a --json record")
    parser.add_argument("--timeout", type=float, help="seconds one run may take (default 30)")
    parser.add_argument("--sizes", help="comma-separated N for start/stop, e.g. 1000,10000")
    parser.add_argument("--shapes", help=f"comma-separated, from {','.join(startstop.SHAPES)}")
    parser.add_argument("--hooks", help=f"comma-separated, from {','.join(startstop.HOOKS)}")
    parser.add_argument("--impls", help=f"comma-separated, from {','.join(startstop.IMPLS)}")
    parser.add_argument("--repeats", type=int, help="repetitions of every start/stop run")
    parser.add_argument("--workloads", help=f"comma-separated, from {','.join(WORKLOADS)}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _choose(given: str | None, allowed: Iterable[str], what: str) -> list[str] | None:
    if given is None:
        return None
    chosen = [x.strip() for x in given.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker is not None:
        return _worker_main(args.worker)
    if args.table is not None:
        recorded = json.loads(Path(args.table).read_text())
        print(render(recorded, Plan.recorded(recorded["plan"])))
        if "prefork" in recorded:
            print("\n" + "\n".join(bench_prefork.render(recorded["prefork"])))
        return 0
    plan = Plan.tiny() if args.smoke else Plan.full()
    if args.timeout is not None:
        plan.timeout = args.timeout
    if args.sizes is not None:
        plan.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    plan.shapes = _choose(args.shapes, startstop.SHAPES, "shape") or plan.shapes
    plan.hooks = _choose(args.hooks, startstop.HOOKS, "hooks") or plan.hooks
    plan.impls = _choose(args.impls, startstop.IMPLS, "implementation") or plan.impls
    plan.workloads = _choose(args.workloads, WORKLOADS, "workload") or plan.workloads
    if args.repeats is not None:
        plan.repeats = dict.fromkeys(plan.sizes, args.repeats)
    for floor in startstop.FLOORS:
        # Every ratio needs the floors.
        if floor not in plan.impls:
            plan.impls.insert(0, floor)

    results: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "load_before": _loadavg(),
            "versions": _versions(),
            "smoke": plan.smoke,
            "timeout": plan.timeout,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    }
    began = time.perf_counter()
    steps: dict[str, Callable[[Plan], Any]] = {
        "startstop": bench_startstop,
        "memory": bench_memory,
        "import": bench_import,
        "add_task": bench_add_task,
        "timer": bench_timer,
        "prefork": lambda plan: bench_prefork.run(plan.smoke),
    }
    for name in plan.workloads:
        progress(f"{name} ...")
        results[name] = steps[name](plan)
    results["meta"]["load_after"] = _loadavg()
    results["meta"]["seconds"] = round(time.perf_counter() - began, 1)
    results["meta"]["not_installed"] = plan.missing
    results["plan"] = asdict(plan)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(render(results, plan))
        if "prefork" in results:
            print("\n" + "\n".join(bench_prefork.render(results["prefork"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
