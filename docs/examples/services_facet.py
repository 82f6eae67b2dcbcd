# facet's own example, unchanged but for the import.
import asyncio
import logging

from tether import Service as ServiceMixin


class B(ServiceMixin):
    def __init__(self) -> None:
        self.value = 0

    async def start(self) -> None:
        self.value += 1
        logging.info("b started")

    async def stop(self) -> None:
        self.value -= 1
        logging.info("b stopped")


class A(ServiceMixin):
    def __init__(self) -> None:
        self.b = B()

    @property
    def dependencies(self) -> list[ServiceMixin]:
        return [self.b]

    async def start(self) -> None:
        logging.info("a started")

    async def stop(self) -> None:
        logging.info("a stopped")


async def main() -> None:
    async with A() as a:
        assert a.b.value == 1
        # What Ctrl-C would do: ask the stack to stop; wait() returns, then it stops.
        asyncio.get_running_loop().call_later(0.01, a.request_stop)
        await a.wait()
    assert a.b.value == 0


logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
asyncio.run(main())
