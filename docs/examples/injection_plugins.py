import asyncio
from collections.abc import AsyncIterator

import tether


class Database(tether.Service):
    async def start(self) -> None:
        self.rows: list[str] = []
        print("database up")

    async def stop(self) -> None:
        print("database down")


class Queue:
    def __init__(self) -> None:
        self.items = asyncio.Queue[str]()


# A plugin is a module with a `prepare`, or any callable; its parameters are injected.
async def db_plugin(container: tether.Container) -> AsyncIterator[object]:
    yield container.get(Database)  # a service: started before the plugins' tasks run


async def app_plugin(plugins: tether.Plugins, container: tether.Container) -> AsyncIterator[object]:
    await plugins.load(db_plugin)  # loaded once, however often it is named
    queue = container.add(Queue())  # a component for everyone (buvar's context.add)
    for job in ("a", "b", "c"):
        queue.items.put_nowait(job)
    plugins.add_teardown(lambda: print("teardown: metrics flushed"))
    yield consume(queue, container.get(Database))  # a supervised task


async def consume(queue: Queue, db: Database) -> None:
    while not queue.items.empty():
        db.rows.append(await queue.items.get())
    print("consumed", db.rows)  # the last task returned: the plugins stop


async def main() -> None:
    plugins = tether.Plugins(tether.Container())
    await plugins.load(app_plugin)  # or "myapp.plugin", a module with a prepare
    print("loaded", plugins.loaded)
    await plugins.run()


asyncio.run(main())
