import asyncio
import dataclasses
from collections.abc import AsyncIterator

import tether


# --8<-- [start:config]
@tether.section("foobar")  # buvar: class FoobarConfig(config.Config, section="foobar")
@dataclasses.dataclass
class FoobarConfig:
    some: str
    show_warnings: bool = False


# buvar: ConfigSource(toml.load("config.toml"), env_prefix="APP")
config = (
    tether.Config()
    .add_dict({"foobar": {"some": "value"}})  # or .add_toml("config.toml")
    .add_env("APP", environ={"APP_FOOBAR_SOME": "thing", "APP_FOOBAR_SHOW_WARNINGS": "yes"})
)
assert config.load(FoobarConfig) == FoobarConfig(some="thing", show_warnings=True)
# --8<-- [end:config]


# --8<-- [start:di]
class Bar: ...


class Foo:
    def __init__(self, bar: Bar | None = None, baz: str = "") -> None:
        self.bar = bar
        self.baz = baz

    @classmethod
    def adapt(cls, baz: str) -> "Foo":
        return cls(baz=baz)


# --8<-- [end:di]


# --8<-- [start:plugin]
async def task(container: tether.Container) -> None:
    foo = await container.aget(Foo, baz="baz")  # buvar: await di.nject(Foo, baz="baz")
    assert foo.bar is None
    print("bar:", type(container.get(Bar)).__name__)  # buvar: context.get(Bar)
    print("foobar:", container.get(FoobarConfig).some)


async def prepare(container: tether.Container) -> AsyncIterator[object]:
    container.add(Bar())  # buvar: context.add(Bar())
    container.register(Foo.adapt, transient=True)  # buvar: di.register(Foo.adapt)
    yield task(container)  # buvar: yield task()


async def main() -> None:
    plugins = tether.Plugins(tether.Container(config=config))
    await plugins.load(prepare)  # buvar: plugin.stage("some.module.with.prepare")
    await plugins.run()  # ends when the yielded tasks are done


asyncio.run(main())
# --8<-- [end:plugin]
