"""The graph fixtures: a scope per test, its plugins, and graphs started for the test.

They are async fixtures run by pytest-asyncio on the test's event loop (in either of its
modes), registered only when pytest-asyncio is active. The scope is entered in the
fixture's context, which pytest-asyncio carries into the test: code holding the
application's container resolves in the test's scope.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tether._inject._config import Config
from tether._inject._container import Container
from tether._inject._plugins import Plugins

from ._starter import Starter

__all__ = ["tether_plugins", "tether_scope", "tether_start"]

_PLUGINS = pytest.StashKey[Plugins]()


@pytest_asyncio.fixture
async def tether_scope(
    request: pytest.FixtureRequest, tether_container: Container, tether_config: dict[str, Any]
) -> AsyncIterator[Container]:
    """A scope of `tether_container` for this test, closed after it.

    `tether_config` is layered over the container's config; `tether_override`
    markers provide fakes; `tether_plugins` markers load plugins. Add more overrides
    before resolving: `tether_scope.add(FakeMailer(), provides=Mailer)`.
    """
    async with tether_container.scope() as scope:
        if tether_config:
            base = scope.get(Config)
            layered = Config()
            layered._layers = [*base._layers]
            layered.add_dict(tether_config, source="tether_config")
            scope.add(layered, provides=Config)
        _override(scope, request.node)
        names = [
            plugin
            for marker in reversed(list(request.node.iter_markers("tether_plugins")))
            for plugin in marker.args
        ]
        if names:
            plugins = Plugins(scope)
            request.node.stash[_PLUGINS] = plugins
            await plugins.load(*names)
        yield scope


@pytest.fixture
def tether_plugins(request: pytest.FixtureRequest, tether_scope: Container) -> Plugins:
    """The test's `Plugins`, registering into `tether_scope`.

    The plugins of `tether_plugins` markers are loaded (their `prepare` has run);
    load more with `await tether_plugins.load(...)`, and run what they yielded with
    `await tether_start(tether_plugins)`.
    """
    plugins: Plugins | None = request.node.stash.get(_PLUGINS, None)
    if plugins is None:
        plugins = Plugins(tether_scope)
        request.node.stash[_PLUGINS] = plugins
    return plugins


@pytest_asyncio.fixture
async def tether_start(
    request: pytest.FixtureRequest, tether_scope: Container
) -> AsyncIterator[Starter]:
    """Graphs started for this test by awaiting it with a type or service; stopped after.

    See [`Starter`][tether.testing.Starter].
    """
    starter = Starter(tether_scope, request.node.nodeid)
    try:
        yield starter
    finally:
        await starter.stop()


def _override(scope: Container, node: pytest.Item) -> None:
    done: set[tuple[Any, str | None]] = set()
    for marker in node.iter_markers("tether_override"):  # closest first: it wins
        if len(marker.args) != 2 or set(marker.kwargs) - {"name"}:
            pytest.fail(
                f"@pytest.mark.tether_override takes the type to override and its fake, and "
                f"optionally name=..., as in tether_override(Mailer, FakeMailer); got "
                f"args={marker.args!r} kwargs={marker.kwargs!r}.",
                pytrace=False,
            )
        provides, fake = marker.args
        name = marker.kwargs.get("name")
        if (provides, name) in done:
            continue
        done.add((provides, name))
        if inspect.isclass(fake) or inspect.isfunction(fake) or inspect.ismethod(fake):
            scope.register(fake, provides=provides, name=name)
        else:
            scope.add(fake, provides=provides, name=name)
