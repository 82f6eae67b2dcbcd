import asyncio

import tether


class Database(tether.Service):
    async def start(self) -> None:
        print("database up")

    async def stop(self) -> None:
        print("database down")


class Migrations(tether.Service):
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def dependencies(self) -> list[Database]:
        return [self.db]

    async def start(self) -> None:
        raise RuntimeError("migration 42 failed")

    async def stop(self) -> None:
        print("never called: Migrations did not start")


class Consumer(tether.Service):
    async def start(self) -> None:
        self.add_task(self.consume())

    async def consume(self) -> None:
        await asyncio.sleep(0.01)
        raise ConnectionError("broker went away")

    async def stop(self) -> None:
        print("consumer down")


async def main() -> None:
    # A failing start stops what this start brought up, in reverse, and re-raises.
    try:
        async with Migrations(Database()):
            pass
    except RuntimeError as error:
        print("start failed:", error)

    # A background task that raises crashes the stack: run() raises it after stopping.
    try:
        await Consumer().run()
    except ConnectionError as error:
        print("crashed:", error)


asyncio.run(main())
