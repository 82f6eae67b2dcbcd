# facet's add_task and mixed-order examples, in one program (facet 0.8 API).
import asyncio

from facet import ServiceMixin


class Leaf(ServiceMixin):
    def __init__(self, name):
        self.name = name

    async def start(self):
        print(self.name, "started")

    async def stop(self):
        print(self.name, "stopped")


class A(ServiceMixin):
    def __init__(self):
        self.b = Leaf("b")
        self.c = Leaf("c")
        self.d = Leaf("d")

    @property
    def dependencies(self):
        return [
            [self.b, self.c],
            self.d,
        ]

    async def task(self):
        await asyncio.sleep(0.1)
        print("task done")

    async def start(self):
        self.add_task(self.task())
        print("start done")

    async def stop(self):
        print("a stopped")


asyncio.run(A().run())
