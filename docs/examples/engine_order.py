"""How the engine orders things: the order written under sharing, and roots that overlap."""

import asyncio

import tether

log: list[str] = []


class Step(tether.Service):
    def __init__(self, name: str, *deps: tether.ServiceBase | list[tether.ServiceBase]) -> None:
        self.name = name
        self.deps = list(deps)

    @property
    def dependencies(self) -> list[tether.ServiceBase | list[tether.ServiceBase]]:
        return self.deps

    async def start(self) -> None:
        await asyncio.sleep(0)  # a real hook would wait for I/O here
        log.append(f"start {self.name}")

    async def stop(self) -> None:
        await asyncio.sleep(0)
        log.append(f"stop {self.name}")


# --8<-- [start:shared]
async def shared_item() -> None:
    a, b, c = Step("a"), Step("b"), Step("c")
    q = Step("q", b)  # reaches b first: q's branch brings it up
    p = Step("p", a, b, c)  # a, then b, then c: c waits for a *and* b
    async with Step("root", [q, p]):  # q and p start concurrently
        pass


# --8<-- [end:shared]


# --8<-- [start:overlap]
async def overlapping_roots() -> None:
    db = Step("db")
    api = Step("api", db)
    await db.__aenter__()  # two roots share db
    await api.__aenter__()
    # Left at the same time: db is held by api until api's stop is over, so db stops
    # after api, by whichever operation lets go of it last.
    await asyncio.gather(db.__aexit__(None, None, None), api.__aexit__(None, None, None))


# --8<-- [end:overlap]


async def main() -> None:
    await shared_item()
    print(" -> ".join(log))
    log.clear()
    await overlapping_roots()
    print(" -> ".join(log))


asyncio.run(main())
