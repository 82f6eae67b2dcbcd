"""The table of ``run.py``: medians, ratios to raw asyncio, and the design's targets."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import startstop

if TYPE_CHECKING:
    from run import Plan

# The targets this table is read against (DESIGN.md "Performance", issue "Engine v2").


def target_startstop(shape: str, n: int) -> float:
    """Start + stop with hooks that suspend once: at most this many times the bare floor."""
    if shape == "chain":
        return 2.3 if n >= 100_000 else 2.0
    return 1.8 if n >= 100_000 else 1.5


TARGET_SYNC_PER_SERVICE = 5e-6  # seconds of start + stop per service, hooks never suspend
TARGET_MEMORY = 700  # bytes of engine bookkeeping kept per running service
TARGET_IMPORT = 0.015  # seconds on top of `import asyncio`
TARGET_ADD_TASK = 1.3  # x raw loop.create_task, spawn and completion
TARGET_TIMER = 1.2  # x the mean lateness of a loop sleeping to each absolute deadline


def ms(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 0.01:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e3:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def _cell(row: dict[str, Any] | None, ratio: bool = True) -> str:
    if row is None:
        return "not installed"
    if "error" in row:
        return str(row["error"])
    if row["impl"] == "aiomisc":
        # No dependency order: it started all N at once, which is not the same work.
        return f"no order ({ms(row['total'])})"
    if "total" not in row:
        return "-"
    if not ratio or "x_raw-bare" not in row:
        return ms(row["total"])
    return f"{ms(row['total'])} {row['x_raw-bare']:.2f}x"


def render_table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(line[k]) for line in [header, *body]) for k in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return [fmt(header).rstrip(), rule, *(fmt(line).rstrip() for line in body)]


def render(results: dict[str, Any], plan: Plan) -> str:
    meta = results["meta"]
    out = [
        "tether benchmarks: medians, each run in a fresh interpreter, implementations interleaved",
        (
            f"python {meta['python']} on {meta['machine']}, {meta['cpus']} cpu(s), load "
            f"average {meta['load_before']} before, {meta['load_after']} after"
        ),
    ]
    if plan.smoke:
        out.append("SMOKE RUN: tiny sizes, one repetition; the numbers mean nothing.")
    if "startstop" in results:
        out += ["", *render_startstop(results["startstop"], plan)]
    if "memory" in results:
        out += ["", *render_memory(results["memory"])]
    others = render_others(results, plan)
    if others:
        out += ["", *others]
    return "\n".join(out)


def render_startstop(rows: list[dict[str, Any]], plan: Plan) -> list[str]:
    by_key = {(r.get("hooks", "sync"), r["shape"], r["n"], r["impl"]): r for r in rows}
    peers = [p for p in startstop.PEERS if p in plan.impls]
    out: list[str] = []
    for hooks in getattr(plan, "hooks", ["sync"]):
        header = ["shape", "N", "raw bare", "raw generic", "tether", "target", "", *peers]
        body: list[list[str]] = []
        for shape in plan.shapes:
            for n in plan.sizes:
                bare = by_key.get((hooks, shape, n, "raw-bare"))
                generic = by_key.get((hooks, shape, n, "raw-generic"))
                ours = by_key.get((hooks, shape, n, "tether"))
                if hooks == "suspend":
                    limit = target_startstop(shape, n)
                    ok = ours is not None and ours.get("x_raw-bare", 99.0) <= limit
                    target = f"<= {limit}x"
                else:
                    per = ours["total"] / n if ours and "total" in ours else None
                    ok = per is not None and per <= TARGET_SYNC_PER_SERVICE
                    target = f"<= {us(TARGET_SYNC_PER_SERVICE)}/svc"
                    if per is not None:
                        target = f"{us(per)}/svc {target}"
                line = [shape, f"{n:,}", _cell(bare, ratio=False), _cell(generic), _cell(ours)]
                line += [target, verdict(ok) if ours else ""]
                line += [_cell(by_key.get((hooks, shape, n, p))) for p in peers]
                body.append(line)
        what = (
            "every hook suspending once (await asyncio.sleep(0))"
            if hooks == "suspend"
            else "hooks that never suspend"
        )
        out += [
            f"Start + stop of N trivial services, {what} (median; ratio to the bare floor)",
            *render_table(header, body),
            "",
        ]
    out += [
        "raw bare    = THE FLOOR OF THE TARGETS: what a person writes knowing the shape: a",
        "  chain awaited in sequence, a fan's leaves in one gather then the root, a tree one",
        "  gather per level (deepest first); stopped the same way in reverse.",
        "raw generic = hand-written asyncio that knows nothing of the shape, for reference:",
        "  every service in its own task that first awaits its dependencies' tasks.",
        f"An error in place of a number: it failed, or ran past the {plan.timeout:g} s limit;",
        "  in parentheses, not run because it already failed at a smaller N. aiomisc has no",
        "  dependency order: it starts all N services at once (its time is shown, not comparable).",
    ]
    if plan.missing:
        out.append(f"Not installed (pip install 'tether[bench]'): {', '.join(plan.missing)}.")
    growth = _growth(by_key, plan)
    if growth:
        out.append("Per service, tether vs the bare floor (linear growth keeps these flat):")
        out += [f"  {line}" for line in growth]
    return out


def _growth(by_key: dict[tuple[str, str, int, str], dict[str, Any]], plan: Plan) -> list[str]:
    lines = []
    for hooks in getattr(plan, "hooks", ["sync"]):
        for shape in plan.shapes:
            parts = []
            for n in plan.sizes:
                ours = by_key.get((hooks, shape, n, "tether"), {})
                floor = by_key.get((hooks, shape, n, "raw-bare"), {})
                if "total" in ours and "total" in floor:
                    parts.append(f"{n:,}: {us(ours['total'] / n)} vs {us(floor['total'] / n)}")
            if parts:
                lines.append(f"{hooks:7} {shape:5} " + "; ".join(parts))
    return lines


def render_memory(rows: list[dict[str, Any]]) -> list[str]:
    by_key = {(r["shape"], r["impl"]): r for r in rows}
    header = ["shape", "N", "raw bare", "tether", "target", ""]
    body = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        bare = by_key.get((shape, "raw-bare"), {})
        ours = by_key.get((shape, "tether"), {})
        n = ours.get("n", bare.get("n", 0))

        def cell(row: dict[str, Any]) -> str:
            return str(row.get("error", f"{row['bytes']:.0f} B")) if row else "-"

        ok = "bytes" in ours and ours["bytes"] <= TARGET_MEMORY
        body.append([shape, f"{n:,}", cell(bare), cell(ours), f"<= {TARGET_MEMORY} B", verdict(ok)])
    return [
        "Memory kept per running service (bytes allocated by starting N, while they run)",
        *render_table(header, body),
        "  The services themselves are built before counting starts: what is counted is the",
        "  bookkeeping that starting them added (tether's records, holds and edges).",
    ]


def render_others(results: dict[str, Any], plan: Plan) -> list[str]:
    header = ["workload", "raw asyncio", "tether", "ratio", "target", ""]
    body: list[list[str]] = []
    notes: list[str] = []
    imp = results.get("import")
    if imp is not None and "error" in imp:
        body.append(["import tether", "-", imp["error"], "", f"< {TARGET_IMPORT * 1e3:g} ms", ""])
    elif imp is not None:
        third = ", ".join(imp["third_party"]) or "none"
        body.append(
            [
                "import tether (over asyncio)",
                f"{ms(imp['asyncio'])} (asyncio)",
                f"+{ms(imp['tether'])}",
                "",
                f"< {TARGET_IMPORT * 1e3:g} ms",
                verdict(imp["tether"] < TARGET_IMPORT),
            ]
        )
        body.append(["third-party modules", "", third, "", "none", verdict(third == "none")])
        notes.append(
            f"import: {plan.import_runs} fresh interpreters; time of `import tether` right "
            "after `import asyncio` in the same one."
        )
    tasks = results.get("add_task")
    if tasks is not None:
        raw, ours = tasks["raw"], tasks["tether"]
        if "error" in raw or "error" in ours:
            body.append(["add_task", raw.get("error", ""), ours.get("error", ""), "", "", ""])
        else:
            ratio = ours["total"] / raw["total"]
            body.append(
                [
                    "add_task spawn + completion",
                    f"{us(raw['total'])}/task",
                    f"{us(ours['total'])}/task",
                    f"{ratio:.2f}x",
                    f"<= {TARGET_ADD_TASK}x",
                    verdict(ratio <= TARGET_ADD_TASK),
                ]
            )
            body.append(
                [
                    "  spawn / completion",
                    f"{us(raw['spawn'])} / {us(raw['complete'])}",
                    f"{us(ours['spawn'])} / {us(ours['complete'])}",
                    (
                        f"{ours['spawn'] / raw['spawn']:.2f}x / "
                        f"{ours['complete'] / raw['complete']:.2f}x"
                    ),
                    "",
                    "",
                ]
            )
            kept = tasks.get("raw-kept", {})
            if "total" in kept:
                body.append(
                    [
                        "  vs raw keeping references",
                        f"{us(kept['total'])}/task",
                        "",
                        f"{ours['total'] / kept['total']:.2f}x",
                        "",
                        "",
                    ]
                )
            notes.append(
                f"add_task: {tasks['count']:,} trivial tasks per round; raw is "
                "loop.create_task (the target's floor); completion ends once every task and "
                "its bookkeeping has finished. 'keeping references' is create_task plus the "
                "asyncio docs' idiom (a set, and a done callback that discards the task): "
                "reference only."
            )
    timer = results.get("timer")
    if timer is not None:
        body += _timer_lines(timer, notes)
    if not body:
        return []
    wrapped = [line for note in notes for line in textwrap.wrap(note, 96, subsequent_indent="  ")]
    return ["Other workloads (medians)", *render_table(header, body), *wrapped]


def _timer_lines(timer: dict[str, Any], notes: list[str]) -> list[list[str]]:
    loop, ours, naive = timer["deadline-loop"], timer["tether"], timer["naive-loop"]
    interval = timer["interval"]
    if "error" in loop or "error" in ours:
        return [["timer", loop.get("error", ""), ours.get("error", ""), "", "", ""]]
    ratio = ours["mean"] / loop["mean"] if loop["mean"] > 0 else float("inf")
    period = f"{interval * 1e3:g} ms"
    lines = [
        [
            f"timer @{period}: mean lateness",
            ms(loop["mean"]),
            ms(ours["mean"]),
            f"{ratio:.2f}x",
            f"<= {TARGET_TIMER}x",
            verdict(ratio <= TARGET_TIMER),
        ],
        [
            f"  last tick's lateness (n={timer['ticks']})",
            ms(loop["last"]),
            ms(ours["last"]),
            "",
            "no drift",
            verdict(ours["last"] < interval),
        ],
    ]
    if "error" not in naive:
        lines.append(["  naive sleep(interval) loop", ms(naive["last"]), "", "", "", ""])
    notes.append(
        f"timer: raw asyncio is a loop sleeping to each deadline t0 + n x {period}; "
        "lateness of tick n is its time minus that deadline. No drift: the last tick is less "
        "than one period late (a naive sleep(interval) loop, shown, accumulates)."
    )
    return lines
