import asyncio

import tether


class Cache(tether.Service):
    async def start(self) -> None:
        print("cache: start")

    async def on_started(self) -> None:  # every service of the graph has started
        print("cache: started, the whole graph is up")

    def on_reload(self) -> None:  # SIGHUP under the runner, or tether.reload(root)
        print("cache: reload")

    async def on_stopping(self) -> None:  # before any service stops
        print("cache: stopping")

    async def stop(self) -> None:
        print("cache: stop")


class Api(tether.Service):
    def __init__(self) -> None:
        self.cache = Cache()

    @property
    def dependencies(self) -> list[Cache]:
        return [self.cache]

    async def start(self) -> None:
        print("api: start")

    async def on_started(self) -> None:
        print("api: started")

    def on_reload(self) -> None:
        print("api: reload")

    async def on_stopping(self) -> None:
        print("api: stopping, stop accepting work")

    async def stop(self) -> None:
        print("api: stop")


async def main() -> None:
    async with Api() as api:
        await tether.reload(api)  # forward: dependencies first


asyncio.run(main())
