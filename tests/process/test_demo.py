"""The demo, run as a user runs it: a real process, real HTTP on loopback, a real Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bounded
from tests.httpclient import fetch
from tests.process.harness import ROOT, Tether

DEMO = ROOT / "examples" / "demo.py"

pytest.importorskip("aiohttp")  # the demo serves its API with aiohttp (extra `demo`)


def _demo(tmp_path: Path, *args: str, **env: str) -> Tether:
    """The demo on a free port with its database in ``tmp_path``, set through DEMO_* variables."""
    settings = {
        "DEMO_DB_PATH": str(tmp_path / "notes.sqlite3"),
        "DEMO_HTTP_PORT": "0",
        "DEMO_HTTP_DRAIN_DELAY": "0.2s",
        "DEMO_CACHE_REFRESH": "50ms",
        **env,
    }
    return Tether("--log-format", "json", *args, program=(str(DEMO),), env=settings)


async def _url(demo: Tether) -> str:
    line = await demo.line("tether demo serving on ")
    return line.split()[4]


async def _until(url: str, check: Callable[[Any], bool], what: str) -> Any:
    """GET ``url`` until its JSON satisfies ``check``."""

    async def poll() -> Any:
        while True:
            document = (await fetch(url)).json()
            if check(document):
                return document
            await asyncio.sleep(0.02)

    try:
        return await bounded(poll())
    except TimeoutError:
        raise AssertionError(f"{url} never showed {what}") from None


def _logs(demo: Tether) -> list[dict[str, Any]]:
    records = []
    for line in demo.stderr:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


async def test_demo_serves_its_api_and_stops_gracefully_on_ctrl_c(tmp_path: Path) -> None:
    """Notes are stored, indexed by the worker and counted by the cache; Ctrl-C exits 0."""
    async with _demo(tmp_path) as demo:
        url = await _url(demo)
        assert any(f"curl -s -X POST {url}/notes" in line for line in demo.stdout)

        created = await fetch(f"{url}/notes", method="POST", body=b"tether ties services together")
        assert (created.status, created.json()["id"]) == (201, 1)
        note = await _until(f"{url}/notes/1", lambda n: n["words"] is not None, "the word count")
        assert note == {"id": 1, "text": "tether ties services together", "words": 4}
        stats = await _until(f"{url}/stats", lambda s: s["words"] == 4, "the refreshed totals")
        assert stats["notes"] == 1
        assert (await fetch(f"{url}/readyz")).status == 200
        status = (await fetch(f"{url}/status")).json()
        states = {entry["name"]: entry["state"] for entry in status["services"]}
        assert states == dict.fromkeys(["Api", "Database", "Indexer", "Stats", "Health"], "running")

        await fetch(f"{url}/notes", method="POST", body=b"kept across the stop")
        demo.send(signal.SIGINT)
        code = await demo.exit_code()

    assert code == 0, demo.output
    logs = _logs(demo)
    events = [record["event"] for record in logs]
    assert "SIGINT received: stopping gracefully (send it again to force)" in events
    stopped = [r["service"] for r in logs if r.get("state") == "stopped" and "service" in r]
    assert stopped[0] == "Api"
    assert stopped[-1] == "Database"
    assert sorted(stopped) == ["Api", "Database", "Health", "Indexer", "Stats"]
    assert any(event.startswith("stage drain done") for event in events)
    assert events[-1] == "Api: exit code 0 (OK)"
    with contextlib.closing(sqlite3.connect(tmp_path / "notes.sqlite3")) as db:
        rows = db.execute("SELECT id, text, words FROM notes ORDER BY id").fetchall()
    assert rows == [(1, "tether ties services together", 4), (2, "kept across the stop", 4)]


async def test_demo_drains_on_sigterm_as_kubernetes_expects(tmp_path: Path) -> None:
    """After SIGTERM /readyz answers 503 while the API still serves, then it exits 0."""
    async with _demo(tmp_path, DEMO_HTTP_DRAIN_DELAY="1s") as demo:
        url = await _url(demo)
        demo.send(signal.SIGTERM)
        await demo.line("not ready: /readyz answers 503", stream="stderr")
        ready = await fetch(f"{url}/readyz")
        notes = await fetch(f"{url}/notes")
        code = await demo.exit_code()
    assert code == 0, demo.output
    assert (ready.status, ready.text) == (503, "stopping\n")
    assert (notes.status, notes.headers["connection"]) == (200, "close")


async def test_demo_reports_a_bad_setting_with_its_source(tmp_path: Path) -> None:
    """A wrong environment override stops the demo before anything starts, naming it."""
    async with _demo(tmp_path, DEMO_HTTP_PORT="eighty") as demo:
        code = await demo.exit_code()
    assert code == 3, demo.output
    assert any(
        "http.port: expected int, got 'eighty' from environment variable DEMO_HTTP_PORT" in line
        for line in demo.stderr
    ), demo.output
