# buvar's pytest example on tether's pytest plugin: buvar's name is beside each idiom.
import pytest

import tether


def prepare(container: tether.Container) -> None:
    container.add("foobar")  # context.add("foobar")


@pytest.mark.asyncio
@pytest.mark.tether_plugins("tether_test_plugins")  # @pytest.mark.buvar_plugins(...)
async def test_wrapped_stage_context(tether_scope: tether.Container) -> None:
    assert tether_scope.get(str) == "foobar"  # context.get(str)
    assert tether_scope.get(tether.Plugins) is not None  # the plugins service


@pytest.mark.asyncio
async def test_wrapped_stage_context_load(
    tether_plugins: tether.Plugins, tether_scope: tether.Container
) -> None:
    await tether_plugins.load(prepare)  # await buvar_load(prepare)
    assert tether_scope.get(str) == "foobar"
