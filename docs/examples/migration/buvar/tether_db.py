# original_db on tether: a plugin registering a component and a provider.
import tether


class Bar:
    pass


class Foo:
    def __init__(self, bar: Bar | None = None, baz: str = "") -> None:
        self.bar = bar
        self.baz = baz

    @classmethod
    def adapt(cls, baz: str) -> "Foo":
        return cls(baz=baz)


def prepare(container: tether.Container) -> None:  # buvar: async def prepare(load)
    container.add(Bar())  # context.add(Bar())
    container.register(Foo.adapt, transient=True)  # di.register(Foo.adapt)
