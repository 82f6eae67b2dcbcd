"""The synchronous fixtures, and the markers that put a test in a tether scope.

`tether_container` and `tether_config` are the two fixtures a project overrides (in
a `conftest.py`) to test its own application; the async fixtures built on them live
in `_asyncio.py`, registered when pytest-asyncio is active.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tether._inject._container import Container

from ._clock import VirtualClock

__all__ = ["pytest_runtest_setup", "tether_config", "tether_container", "virtual_clock"]

SCOPE_MARKERS = ("tether_config", "tether_override", "tether_plugins")


@pytest.fixture
def tether_container() -> Container:
    """The container tests resolve from: a new, empty one unless a conftest overrides it.

    Override it to test the application's own providers:

    ```python
    @pytest.fixture
    def tether_container() -> tether.Container:
        return myapp.make_container()
    ```
    """
    return Container()


@pytest.fixture
def tether_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config values for this test, layered over the container's config by `tether_scope`.

    Merged from the `tether_config` markers on the test, its class and its module (the
    closest wins, key by key). Override the fixture to set values for a whole module.
    """
    merged: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("tether_config"))):
        if len(marker.args) > 1 or (marker.args and not isinstance(marker.args[0], Mapping)):
            pytest.fail(
                f"@pytest.mark.tether_config takes one mapping and/or keyword values, as in "
                f"tether_config({{'db': {{'url': 'sqlite://'}}}}) or tether_config(db={{...}}); "
                f"got {marker.args!r}.",
                pytrace=False,
            )
        for values in (*marker.args, marker.kwargs):
            _merge(merged, values)
    return merged


@pytest.fixture
def virtual_clock() -> Iterator[VirtualClock]:
    """A `VirtualClock` for this test: run coroutines on virtual time.

    Tasks still pending on its loop when the test ends are reported by the leak check
    before the loop is closed.
    """
    with VirtualClock() as clock:
        yield clock


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Give a test marked with a scope marker the `tether_scope` fixture it acts through."""
    if not isinstance(item, pytest.Function):
        return
    marked = [name for name in SCOPE_MARKERS if item.get_closest_marker(name) is not None]
    if not marked or "tether_scope" in item.fixturenames:
        return
    if not item.config.pluginmanager.has_plugin("tether.testing.asyncio"):
        pytest.fail(
            f"@pytest.mark.{marked[0]} acts through the async fixture tether_scope, which "
            f"needs pytest-asyncio: pip install pytest-asyncio (or 'tether[testing]').",
            pytrace=False,
        )
    item.fixturenames.append("tether_scope")


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        existing = into.get(key)
        if isinstance(existing, dict) and isinstance(value, Mapping):
            _merge(existing, value)
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value
