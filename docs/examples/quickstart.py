import asyncio

import tether


class Database(tether.Service):
    async def start(self) -> None:
        print("database up")

    async def stop(self) -> None:
        print("database down")


class Api(tether.Service):
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.db]  # started before Api, stopped after it

    async def start(self) -> None:
        print("api up")

    async def stop(self) -> None:
        print("api down")


async def main() -> None:
    async with Api(Database()):
        print("serving")


asyncio.run(main())
