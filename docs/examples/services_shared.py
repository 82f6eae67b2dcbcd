import asyncio

import tether


class Pool(tether.Service):
    async def start(self) -> None:
        print("pool up")

    async def stop(self) -> None:
        print("pool down")


class Reader(tether.Service):
    def __init__(self, name: str, pool: Pool) -> None:
        self.name = name
        self.pool = pool

    @property
    def dependencies(self) -> list[Pool]:
        return [self.pool]

    async def start(self) -> None:
        print(self.name, "up")

    async def stop(self) -> None:
        print(self.name, "down")


async def main() -> None:
    pool = Pool()
    api, worker = Reader("api", pool), Reader("worker", pool)
    async with api:  # starts pool, then api
        async with worker:  # pool already runs: only worker starts
            print("both running")
        print("worker stopped; the pool still serves api")
    # api stopped, and with it the last user of the pool


asyncio.run(main())
