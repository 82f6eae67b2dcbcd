import asyncio

import tether


class Pipeline(tether.Service):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.done: list[int] = []

    async def start(self) -> None:
        for job in range(1, 6):
            self.queue.put_nowait(job)
        self.add_task(self.watch())  # any coroutine, owned by this service

    @tether.task  # runs for the service's lifetime
    async def consume(self) -> None:
        while True:
            job = await self.queue.get()
            self.done.append(job)

    @tether.timer(0.05)  # tick n at t0 + n * 0.05 s: no drift; overruns skip ticks
    async def report(self) -> None:
        print(f"report: {len(self.done)} jobs done")
        if not self.queue.qsize():
            self.request_stop()  # our work is done: run() returns, then we stop

    async def watch(self) -> None:
        while await self.sleep(0.01):  # False as soon as the service stops
            pass
        print("watch: the service is stopping")

    async def stop(self) -> None:  # its tasks are cancelled and awaited before stop returns
        print("stopped with", self.done)


asyncio.run(Pipeline().run())
