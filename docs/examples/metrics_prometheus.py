"""/metrics on the health server: scraped and read with prometheus_client's own parser."""

import asyncio

from prometheus_client.parser import text_string_to_metric_families

import tether
from tether.ext.prometheus import Metrics
from tether.health import Health


class Database(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0.01)  # connecting


class Worker(tether.Service):
    def __init__(self, health: Health, database: Database) -> None:
        self.health = health  # a dependency: it reports on the graph it belongs to
        self.database = database

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.health, self.database]

    @tether.task
    async def consume(self) -> None:
        await asyncio.Event().wait()


async def scrape(url: str) -> str:
    reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n\r\n", 1)[1].decode()


async def main() -> None:
    # registry=None: tether's metrics only (by default, prometheus_client's REGISTRY
    # follows them: your own metrics and the process collector).
    metrics = Metrics(registry=None)
    health = Health(port=0, metrics=metrics, drain_delay=0)
    worker = Worker(health, Database())
    # tether.run records the durations by itself; here the graph starts in our code.
    with tether.subscribe(metrics):
        async with worker:
            assert health.url is not None
            text = await scrape(health.url)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            service = sample.labels.get("service", "")
            if family.name == "tether_service_state" and sample.value:
                print(f"{sample.name}{{service={service!r}, state={sample.labels['state']!r}}}")
            elif family.name == "tether_service_start_duration_seconds":
                print(f"{sample.name}{{service={service!r}}} > 0: {sample.value > 0}")
            elif family.name in ("tether_service_tasks", "tether_ready", "tether_draining"):
                label = f"{{service={service!r}}}" if service else ""
                print(f"{sample.name}{label} = {sample.value:g}")


asyncio.run(main())
