"""What watching the lifecycle costs: a /metrics scrape, and the spans of a start and stop.

Run by hand: ``python benchmarks/bench_observe.py [--services 100] [--rounds 50]``
(``--smoke`` for a quick pass). Needs ``prometheus_client`` and OpenTelemetry's API and
SDK (``pip install -e '.[dev]'``).

Scrape: a graph of N services under a `Health` with `Metrics` (tether's families only,
`registry=None`), scraped over loopback; the size of the answer in bytes and the median
time from request to last byte.

Tracing: start and stop of N services (a root over N leaves, each hook suspending
once), median over the rounds, with nothing subscribed, with the runner's recorder,
with a `LifecycleTracer` and no SDK (OpenTelemetry's no-op), and with the SDK
recording every span into memory. Implementations alternate within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tether
from tether._process._observe import LifecycleRecorder
from tether.ext.otel import LifecycleTracer
from tether.ext.prometheus import Metrics
from tether.health import Health


class Leaf(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0)

    async def stop(self) -> None:
        await asyncio.sleep(0)


class Root(tether.Service):
    def __init__(self, *children: tether.Service) -> None:
        self.children = list(children)

    @property
    def dependencies(self) -> list[list[tether.Service]]:
        return [self.children]


def leaves(count: int) -> list[tether.Service]:
    made: list[tether.Service] = []
    for index in range(count):
        leaf = Leaf()
        leaf.name = f"leaf{index}"  # type: ignore[attr-defined]
        made.append(leaf)
    return made


async def get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data.split(b"\r\n\r\n", 1)[1]


async def scrape(services: int, rounds: int) -> tuple[int, float]:
    metrics = Metrics(registry=None)
    health = Health(port=0, metrics=metrics, drain_delay=0)
    times: list[float] = []
    body = b""
    with tether.subscribe(metrics):
        async with Root(health, *leaves(services)):
            assert health.port is not None
            for _ in range(rounds):
                began = time.perf_counter()
                body = await get(health.port, "/metrics")
                times.append(time.perf_counter() - began)
    return len(body), statistics.median(times)


def with_nothing() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def with_empty_subscriber() -> contextlib.AbstractContextManager[None]:
    return tether.subscribe(lambda _event: None)


def with_recorder() -> contextlib.AbstractContextManager[None]:
    return tether.subscribe(LifecycleRecorder())


def with_noop_tracer() -> contextlib.AbstractContextManager[None]:
    return tether.subscribe(LifecycleTracer())


@contextlib.contextmanager
def with_sdk() -> Iterator[None]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    with tether.subscribe(LifecycleTracer(provider)):
        yield
    provider.shutdown()


CASES: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "nothing subscribed": with_nothing,
    "a subscriber doing nothing": with_empty_subscriber,
    "recorder (the runner's)": with_recorder,
    "tracer, no SDK": with_noop_tracer,
    "tracer, SDK in memory": with_sdk,
}


async def start_stop(services: int, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, case in CASES.items():
            root = Root(*leaves(services))
            with case():
                began = time.perf_counter()
                async with root:
                    pass
                samples[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="a quick pass at tiny sizes")
    args = parser.parse_args()
    services, rounds = (10, 3) if args.smoke else (args.services, args.rounds)
    size, took = asyncio.run(scrape(services, rounds))
    print(f"/metrics for {services} services (+ root and Health): {size} bytes,")
    print(f"  median scrape over loopback {took * 1000:.2f} ms ({rounds} scrapes)")
    medians = asyncio.run(start_stop(services, rounds))
    floor = medians["a subscriber doing nothing"]
    print(f"start + stop of {services} services, median of {rounds} (ratio to a subscriber")
    print("doing nothing; per service: the time over it):")
    for name, value in medians.items():
        extra = (value - floor) / services * 1e6
        print(f"  {name:<28} {value * 1000:8.2f} ms  {value / floor:5.2f}x  {extra:+7.1f} us/svc")


if __name__ == "__main__":
    main()
