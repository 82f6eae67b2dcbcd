"""The runner traces the lifecycle by itself when OpenTelemetry's API is installed."""

from __future__ import annotations

import json
import signal

import pytest

pytest.importorskip("opentelemetry.sdk")

from tests.process.harness import Tether


async def test_tether_run_traces_start_reload_and_stop_with_the_applications_sdk() -> None:
    """`tether run` with the SDK configured by the application: the start, a SIGHUP reload
    and the SIGTERM stop each come out as a trace of stages and services."""
    async with Tether("run", "tests.process.traced_app:api", "--log-format", "plain") as proc:
        await proc.line("Api running", stream="stderr")
        proc.send(signal.SIGHUP)
        await proc.line("reloaded")
        await proc.line('"span": "tether reload Api"')
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    spans = [json.loads(line) for line in proc.stdout if line.startswith("{")]
    names = {span["id"]: span["span"] for span in spans}
    parents = {span["span"]: names.get(span["parent"]) for span in spans}
    assert parents == {
        "start Database": "stage start",
        "start Api": "stage start",
        "stage start": "tether start Api",
        "started Api": "stage started",
        "stage started": "tether start Api",
        "tether start Api": None,
        "reload Database": "stage reload",
        "stage reload": "tether reload Api",
        "tether reload Api": None,
        "stop Api": "stage stop",
        "stop Database": "stage stop",
        "stage stop": "tether stop Api",
        "tether stop Api": None,
    }, proc.output
