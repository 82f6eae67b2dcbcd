"""/metrics of a process run by `tether run`: the runner records what it reports."""

from __future__ import annotations

import signal

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from tests.httpclient import fetch
from tests.process.harness import Tether


async def test_tether_run_records_the_durations_that_metrics_report() -> None:
    """Under the runner no subscription is needed: every service's start duration is
    there, and no warning is logged."""
    async with Tether("run", "tests.process.metrics_app:api", "--log-format", "plain") as proc:
        line = await proc.line("metrics at ")
        response = await fetch(line.split("metrics at ", 1)[1])
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert response.status == 200
    samples = {
        (sample.name, sample.labels.get("service")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    for service in ("Api", "Health", "Database"):
        duration = samples[("tether_service_start_duration_seconds", service)]
        assert duration > 0
    assert samples[("tether_ready", None)] == 1
    assert "/metrics will not report" not in proc.output
    assert "/metrics" in proc.output  # the health server's line names it
