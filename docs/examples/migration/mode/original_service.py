# mode's "Creating a Service" and "It's a Graph!" snippets, as one program.
from mode import Service, Worker


class OtherService(Service):
    async def on_start(self) -> None:
        print("other: on_start")

    async def on_stop(self) -> None:
        print("other: on_stop")


class Listed(Service):
    def __init__(self, name: str, **kwargs: object) -> None:
        self.name = name
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        print(f"{self.name}: on_start")

    async def on_stop(self) -> None:
        print(f"{self.name}: on_stop")


class MyService(Service):
    def on_init(self) -> None:
        # 1) Starting other services using add_dependency
        self.add_dependency(OtherService())

    def on_init_dependencies(self) -> list[Service]:
        # 2) Start a list of services using on_init_dependencies
        return [Listed("a"), Listed("b")]

    async def on_start(self) -> None:
        print("my: on_start")
        # 3) Start a future/coroutine (that will be waited on to complete on stop)
        self.add_future(self.my_coro())

    async def my_coro(self) -> None:
        print("my: executing coroutine")

    async def on_started(self) -> None:
        print("my: on_started")

    async def on_stop(self) -> None:
        print("my: on_stop")

    # 5) Start a background task that keeps running
    @Service.task
    async def _my_loop(self) -> None:
        while not self.should_stop:
            # NOTE: self.sleep will wait for one second, or until service stopped/crashed.
            await self.sleep(0.05)
            print("my: background task waking up")


if __name__ == "__main__":
    Worker(MyService(), loglevel="info", redirect_stdouts=False).execute_from_commandline()
