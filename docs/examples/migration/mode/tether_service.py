# The same program on tether: mode's name for each idiom is in the comment beside it.
import tether


class OtherService(tether.Service):
    async def start(self) -> None:  # on_start
        print("other: on_start")

    async def stop(self) -> None:  # on_stop
        print("other: on_stop")


class Listed(tether.Service):
    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:
        print(f"{self.name}: on_start")

    async def stop(self) -> None:
        print(f"{self.name}: on_stop")


class MyService(tether.Service):
    def __init__(self) -> None:  # on_init
        # 1) add_dependency: from the next start on, started first and stopped last
        self.add_dependency(OtherService())
        self.listed: list[tether.Service] = [Listed("a"), Listed("b")]

    @property
    def dependencies(self) -> list[tether.Service]:  # 2) on_init_dependencies
        return self.listed

    async def start(self) -> None:  # on_start: the dependencies run already
        print("my: on_start")
        # 3) add_future: a supervised task, cancelled and awaited on stop
        self.add_future(self.my_coro())

    async def my_coro(self) -> None:
        print("my: executing coroutine")

    async def on_started(self) -> None:  # on_started
        print("my: on_started")

    async def stop(self) -> None:  # on_stop
        print("my: on_stop")

    @tether.task  # 5) @Service.task
    async def my_loop(self) -> None:
        while not self.should_stop:
            # self.sleep returns early (False) when the service begins to stop.
            await self.sleep(0.05)
            print("my: background task waking up")


if __name__ == "__main__":
    tether.run(MyService(), log_level="info")  # Worker(MyService(), loglevel="info")...
