import asyncio

import tether


class Database(tether.Service):
    @tether.task
    async def keepalive(self) -> None:
        while await self.sleep(30):
            pass


class Api(tether.Service):
    def __init__(self) -> None:
        self.db = Database()

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.db]


def show(event: tether.LifecycleEvent) -> None:
    if event.kind is tether.EventKind.STATE and event.service is not None:
        print(f"event: {type(event.service).__name__} {event.state}")


async def main() -> None:
    api = Api()
    with tether.subscribe(show):  # every lifecycle event raised inside the block
        async with api:
            await asyncio.sleep(0)  # let the keepalive task reach its first sleep
            print(tether.status_tree(api))  # what SIGUSR1 prints under the runner
            status = tether.status(api.db)
            print("db:", status.state, "tasks:", len(status.tasks))


asyncio.run(main())
