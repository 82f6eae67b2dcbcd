import tether


# --8<-- [start:service]
class UserCache(tether.Service):
    def __init__(self) -> None:  # mode: on_init; no super().__init__() needed
        self.cache: dict[str, str] = {}

    async def start(self) -> None:  # mode: on_start
        self.cache["ada"] = "Ada Lovelace"

    async def on_started(self) -> None:  # mode: on_started
        print("cache ready")

    async def stop(self) -> None:  # mode: on_stop
        self.cache.clear()

    @tether.timer(0.05)  # mode: @Service.timer(10)
    async def remove_expired(self) -> None:
        self.cache.pop("expired", None)

    @tether.task  # mode: @Service.task
    async def refresh(self) -> None:
        while await self.sleep(0.05):  # mode: while not self.should_stop: await self.sleep(...)
            pass


# --8<-- [end:service]


# --8<-- [start:graph]
class App(tether.Service):
    def __init__(self) -> None:
        self.user_cache = UserCache()

    @property
    def dependencies(self) -> list[tether.Service]:  # mode: on_init_dependencies
        return [self.user_cache]

    async def on_started(self) -> None:
        print(tether.graph(self))  # mode: beacon.as_graph().to_dot(...)
        self.request_stop()  # ends this example


app = App()
# mode: Worker(app, loglevel="info").execute_from_commandline()
if __name__ == "__main__":
    tether.run(app, log_level="warning")
# --8<-- [end:graph]
