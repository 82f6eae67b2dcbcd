import asyncio

import tether


class Step(tether.Service):
    def __init__(self, name: str, *needs: "Step | list[Step]") -> None:
        self.name = name
        self.needs = list(needs)

    @property
    def dependencies(self) -> list["Step | list[Step]"]:
        return self.needs

    async def start(self) -> None:
        print("start", self.name)

    async def stop(self) -> None:
        print("stop ", self.name)


config = Step("config")
db = Step("db", config)
cache = Step("cache", config)
search = Step("search", config)
# Top-level items one after another; the members of a nested list concurrently.
api = Step("api", db, [cache, search])


async def main() -> None:
    async with api:
        print("running")


asyncio.run(main())
