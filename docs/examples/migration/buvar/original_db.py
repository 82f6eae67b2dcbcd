# buvar's plugin loaded by original_web (buvar 0.44.18): a component and DI adapters.
from buvar import context, di, plugin


class Bar:
    pass


class Foo:
    def __init__(self, bar: Bar = None, baz: str = ""):
        self.bar = bar
        self.baz = baz

    @classmethod
    async def adapt(cls, baz: str) -> "Foo":
        return Foo(baz=baz)


async def prepare(load: plugin.Loader):
    context.add(Bar())
    # One adapter per type: with two for Foo (the page registers a function too),
    # buvar 0.44.18 picks one or the other from run to run.
    di.register(Foo.adapt)
