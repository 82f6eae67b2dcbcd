"""/metrics in pre-fork workers: each reports its master's workers, respawns and reloads."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import bounded
from tests.httpclient import fetch
from tests.prefork.test_prefork import forked_pids, master, port_of, ready_count

APP = "tests.prefork.prefork_metrics:app"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")


async def master_figures(port: int) -> dict[str, float]:
    response = await fetch(f"http://127.0.0.1:{port}/metrics")
    assert response.status == 200, response
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith("tether_prefork"):
                state = sample.labels.get("state")
                found[f"{sample.name}:{state}" if state else sample.name] = sample.value
    return found


async def until_figures(port: int, expected: dict[str, float]) -> None:
    async def reached() -> None:
        while await master_figures(port) != expected:
            await asyncio.sleep(0.05)

    try:
        await bounded(reached(), 15)
    except TimeoutError:
        got = await master_figures(port)
        raise AssertionError(f"expected {expected}, got {got}") from None


async def test_workers_report_their_masters_workers_respawns_and_reloads() -> None:
    """Two workers: serving 2 of 2. One killed: a respawn. SIGHUP: a reload. Whichever
    worker answers, it reports the same master."""
    async with master(2, app=APP) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        figures = {
            "tether_prefork_workers:serving": 2.0,
            "tether_prefork_workers:desired": 2.0,
            "tether_prefork_worker_respawns_total": 0.0,
            "tether_prefork_reloads_total": 0.0,
        }
        await until_figures(port, figures)
        os.kill(forked_pids(proc)[0], signal.SIGKILL)
        await until_figures(port, {**figures, "tether_prefork_worker_respawns_total": 1.0})
        proc.send(signal.SIGHUP)
        await proc.line("reload complete", stream="stderr", seconds=15)
        await until_figures(
            port,
            {
                **figures,
                "tether_prefork_worker_respawns_total": 1.0,
                "tether_prefork_reloads_total": 1.0,
            },
        )
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_each_workers_own_series_carry_its_number() -> None:
    """Scrapes reach either worker: each one's series are labelled with its number, so a
    counter never seems to jump between two workers' values; the master's have none."""
    async with master(2, app=APP) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        seen: set[str] = set()

        async def both_answered() -> None:
            while seen != {"1", "2"}:
                response = await fetch(f"http://127.0.0.1:{port}/metrics")
                workers = set()
                for family in text_string_to_metric_families(response.text):
                    for sample in family.samples:
                        if sample.name.startswith("tether_prefork"):
                            assert "worker" not in sample.labels, sample
                        elif sample.name.startswith("tether_"):
                            workers.add(sample.labels.get("worker"))
                assert len(workers) == 1, workers  # one worker answers for all its series
                seen.update(str(worker) for worker in workers)

        await bounded(both_answered(), 15)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
