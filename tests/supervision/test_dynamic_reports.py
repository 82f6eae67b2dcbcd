"""What the reports say of a supervisor with children added at run time.

One child per connection means thousands of children that come and go: `/metrics`
counts them per supervisor and state instead of making a series per child (a label per
connection is the cardinality trap Prometheus' documentation warns of), `/status`
does the same, and the status tree shows the first few and counts the rest. The
children given to the supervisor are reported one by one, as every other service.
"""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

import tether
from tests.conftest import bounded
from tests.ext.test_prometheus import App, scrape
from tests.httpclient import fetch
from tether import Restart
from tether.ext.prometheus import Metrics
from tether.health import Health


class Given(tether.Service):
    pass


class Conn(tether.Service):
    restart = Restart.TEMPORARY


ADDED = 40


async def test_added_children_are_counted_per_supervisor_not_listed_one_by_one() -> None:
    metrics = Metrics(registry=None)
    health = Health(drain_delay=0, port=0, metrics=metrics)
    supervisor = tether.Supervisor([Given(), Given()], name="Sessions")
    with tether.subscribe(metrics):
        async with App(health, supervisor):
            added = [await supervisor.start_child(Conn()) for _ in range(ADDED)]
            await supervisor.terminate_child(added[0])
            got = await scrape(health)
            assert health.url is not None
            document = (await bounded(fetch(health.url + "/status"))).json()
            tree = tether.status_tree(supervisor).splitlines()

    # /metrics: a series per service given, none per child added; a count per state.
    assert {dict(labels)["service"] for labels in got.samples("tether_service_tasks")} == {
        "App",
        "Health",
        "Supervisor[Sessions]",
        "Given",
        "Given#2",
    }
    assert got.families["tether_supervisor_children"].type == "gauge"
    counts = got.samples("tether_supervisor_children")
    sessions = "Supervisor[Sessions]"
    assert counts[(("state", "running"), ("supervisor", sessions))] == 2 + ADDED - 1
    assert counts[(("state", "stopped"), ("supervisor", sessions))] == 0  # temporary: removed
    assert len(counts) == 6  # one per state

    # /status: the same.
    names = [service["name"] for service in document["services"]]
    assert "Conn" not in names
    (entry,) = [s for s in document["services"] if s["name"] == sessions]
    assert entry["children"] == {"running": 2 + ADDED - 1}
    assert entry["dependencies"] == ["Given", "Given"]

    # The status tree: the children given, the first added ones, then a count.
    assert tree[0].startswith("Supervisor[Sessions]  running")
    conns = [line for line in tree if "Conn  running" in line]
    assert len(conns) == 10
    assert tree[-1].endswith(f"└── … and {ADDED - 1 - 10} more children added (running)")


async def test_a_few_added_children_are_all_shown_in_the_tree() -> None:
    supervisor = tether.Supervisor([Given()], name="Sessions")
    async with supervisor:
        for _ in range(3):
            await supervisor.start_child(Conn())
        tree = tether.status_tree(supervisor).splitlines()
    assert [line.split("  ")[0] for line in tree if "task" not in line] == [
        "Supervisor[Sessions]",
        "├── Given",
        "├── Conn",
        "├── Conn",
        "└── Conn",
    ]
