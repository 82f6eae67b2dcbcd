"""Resolving from tether's container, beside svcs and dishka when they are installed.

Three workloads, each the same work in every library:

* cached: a singleton that was resolved before (target: under 1 microsecond);
* factory: a transient value built from three cached singletons (target: no slower
  than dishka);
* scoped override: open a scope, provide a per-request value in it, resolve a handler
  that needs it and a shared singleton, close the scope.

Run ``python benchmarks/bench_resolve.py`` (``--smoke`` for a quick pass). Medians of
several repeats, in microseconds per operation.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

import tether


class A:
    pass


class B:
    pass


class C:
    pass


class Three:
    def __init__(self, a: A, b: B, c: C) -> None:
        self.a = a
        self.b = b
        self.c = c


class Request:
    pass


class Handler:
    def __init__(self, request: Request, a: A) -> None:
        self.request = request
        self.a = a


def tether_workloads() -> dict[str, Callable[[], object]]:
    container = tether.Container()
    container.register(A)
    container.register(B)
    container.register(C)
    container.register(Three, transient=True)
    container.register(Handler)
    container.get(A)
    container.get(Three)

    def scoped() -> object:
        with container.scope() as scope:
            scope.add(Request())
            return scope.get(Handler)

    return {
        "cached": lambda: container.get(A),
        "factory": lambda: container.get(Three),
        "scoped override": scoped,
    }


def svcs_workloads() -> dict[str, Callable[[], object]] | None:
    try:
        import svcs
    except ImportError:
        return None
    registry = svcs.Registry()
    registry.register_value(A, A())
    registry.register_value(B, B())
    registry.register_value(C, C())
    registry.register_factory(Three, lambda svcs_container: Three(*svcs_container.get(A, B, C)))
    registry.register_factory(
        Handler, lambda svcs_container: Handler(*svcs_container.get(Request, A))
    )
    app = svcs.Container(registry)
    app.get(A)

    def factory() -> object:
        # svcs caches every value per container: a fresh container is its "transient".
        with svcs.Container(registry) as request_container:
            return request_container.get(Three)

    def scoped() -> object:
        with svcs.Container(registry) as request_container:
            request_container.register_local_value(Request, Request())
            return request_container.get(Handler)

    return {"cached": lambda: app.get(A), "factory": factory, "scoped override": scoped}


def dishka_workloads() -> dict[str, Callable[[], object]] | None:
    try:
        from dishka import Provider, Scope, make_container
    except ImportError:
        return None
    provider = Provider(scope=Scope.APP)
    provider.provide(A)
    provider.provide(B)
    provider.provide(C)
    provider.provide(Three, cache=False)
    provider.from_context(provides=Request, scope=Scope.REQUEST)
    provider.provide(Handler, scope=Scope.REQUEST)
    container = make_container(provider)
    container.get(A)

    def scoped() -> object:
        with container(context={Request: Request()}) as request_container:
            return request_container.get(Handler)

    return {
        "cached": lambda: container.get(A),
        "factory": lambda: container.get(Three),
        "scoped override": scoped,
    }


def measure(func: Callable[[], object], smoke: bool) -> float:
    """Median microseconds per call over several repeats."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    if smoke:
        number = max(1, number // 10)
    runs = timer.repeat(repeat=3 if smoke else 7, number=number)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="a quick pass of each workload")
    args = parser.parse_args()
    libraries = {
        "tether": tether_workloads(),
        "svcs": svcs_workloads(),
        "dishka": dishka_workloads(),
    }
    present = {name: work for name, work in libraries.items() if work is not None}
    workloads = ["cached", "factory", "scoped override"]
    header = f"{'workload':<18}" + "".join(f"{name:>12}" for name in present)
    print("resolve, microseconds per operation (median)")
    print(header)
    results: dict[str, dict[str, float]] = {}
    for workload in workloads:
        row = results[workload] = {}
        for name, work in present.items():
            row[name] = measure(work[workload], args.smoke)
        print(f"{workload:<18}" + "".join(f"{row[name]:>12.3f}" for name in present))
    cached = results["cached"]["tether"]
    print(f"\ncached resolve: {cached:.3f} us (target < 1 us): {'ok' if cached < 1 else 'MISSED'}")
    if "dishka" in present:
        ratio = results["factory"]["tether"] / results["factory"]["dishka"]
        verdict = "ok" if ratio <= 1 else "MISSED"
        print(f"factory vs dishka: {ratio:.2f}x (target <= 1x): {verdict}")


if __name__ == "__main__":
    main()
