"""Supervision: a worker that crashes twice is restarted; its dependent restarts with it."""

import asyncio

import tether


class Queue(tether.Service):
    """Fails twice, then settles down."""

    failures = 0

    def __init__(self) -> None:
        self.settled = asyncio.Event()

    async def start(self) -> None:
        print("queue up")

    async def stop(self) -> None:
        print("queue down")

    @tether.task
    async def consume(self) -> None:
        await asyncio.sleep(0.01)
        if Queue.failures < 2:
            Queue.failures += 1
            raise ConnectionError(f"lost the broker ({Queue.failures})")
        self.settled.set()


class Worker(tether.Service):
    """Needs the queue: restarted with it."""

    restart = tether.Restart.PERMANENT  # the default; TRANSIENT and TEMPORARY also exist

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.queue]

    async def start(self) -> None:
        print("worker up")

    async def stop(self) -> None:
        print("worker down")


async def main() -> None:
    """Run the supervisor until the queue has settled after its two failures."""
    queue = Queue()
    worker = Worker(queue)
    app = tether.Supervisor(
        [queue, worker],
        strategy=tether.Strategy.ONE_FOR_ONE,
        max_restarts=3,  # at most 3 restarts ...
        max_seconds=5,  # ... within 5 seconds, else give up and fail
        backoff=tether.Backoff(initial=0.05, maximum=1.0),
    )
    async with app:
        await asyncio.wait_for(queue.settled.wait(), 10)
        print("restarts:", tether.status(queue).restarts, tether.status(worker).restarts)


asyncio.run(main())
