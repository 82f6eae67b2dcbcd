"""The resolve benchmark's workloads do what their names say (so its figures mean something)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_resolve.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_resolve", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_resolve"] = module
    spec.loader.exec_module(module)
    return module


def test_tether_workloads_resolve_what_they_measure(bench: ModuleType) -> None:
    """cached returns one singleton, factory a new value each time, scoped a per-scope one."""
    work = bench.tether_workloads()
    assert work["cached"]() is work["cached"]()
    first, second = work["factory"](), work["factory"]()
    assert isinstance(first, bench.Three)
    assert first is not second
    assert first.a is second.a
    handler = work["scoped override"]()
    assert isinstance(handler, bench.Handler)
    assert handler is not work["scoped override"]()
    assert handler.a is work["cached"]()
