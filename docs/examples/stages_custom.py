import asyncio

import tether

# Right after `started`, for every service at once.
WARM_UP = tether.Stage("warm_up", after=tether.STARTED, direction="gather")
# Before `stop`, dependents first (backward), once `stopping` has run.
FLUSH = tether.Stage("flush", before=tether.STOP, direction="backward")


class Cache(tether.Service):
    @WARM_UP
    async def fill(self) -> None:
        await asyncio.sleep(0.01)
        print("cache: filled")

    @FLUSH
    def write_back(self) -> None:  # hooks may be sync
        print("cache: written back")


class Api(tether.Service):
    def __init__(self) -> None:
        self.cache = Cache()

    @property
    def dependencies(self) -> list[Cache]:
        return [self.cache]

    @WARM_UP
    async def prime(self) -> None:
        print("api: primed")

    @FLUSH
    async def drain_queue(self) -> None:
        print("api: queue drained")


async def main() -> None:
    async with Api():
        print("running")


asyncio.run(main())
