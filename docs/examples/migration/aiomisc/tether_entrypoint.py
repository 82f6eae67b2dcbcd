# The aiomisc program on tether: aiomisc's name for each idiom is beside its port.
import asyncio
import concurrent.futures
import threading

import tether


def checksum(data: bytes) -> int:  # @aiomisc.threaded: call it with asyncio.to_thread
    assert threading.current_thread() is not threading.main_thread()
    return sum(data) % 256


class Echo(tether.Service):
    def __init__(self, port: int = 0) -> None:  # Service(port=...): a plain __init__
        self.port = port

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        print(f"echo started on {self.port}", flush=True)

    async def stop(self) -> None:  # stop(self, exception=None): run() raises the error
        self.server.close()
        await self.server.wait_closed()
        print("echo stopped", flush=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        total = await asyncio.to_thread(checksum, line)  # await checksum(line)
        writer.write(f"{line.decode().strip()} {total}\n".encode())
        await writer.drain()
        writer.close()


class Heartbeat(tether.Service):
    @tether.timer(0.05)  # PeriodicService with interval=0.05 and callback()
    async def callback(self) -> None:
        print("beat", flush=True)


class Cleanup(tether.Service):
    async def start(self) -> None:
        print("cleanup started", flush=True)

    @tether.timer(0.05)  # PeriodicCallback(self.sweep).start(0.05) in start()
    async def sweep(self) -> None:
        print("sweep", flush=True)

    async def stop(self) -> None:  # the timer stops with the service: no periodic.stop()
        print("cleanup stopped", flush=True)


class ThreadPool(tether.Service):  # entrypoint(pool_size=4): the loop's default executor
    def __init__(self, size: int) -> None:
        self.size = size

    async def start(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(self.size)
        asyncio.get_running_loop().set_default_executor(self.executor)

    async def stop(self) -> None:
        await asyncio.get_running_loop().shutdown_default_executor()


class App(tether.Service):  # entrypoint(Echo(port=0), Heartbeat(...), Cleanup(), ...)
    def __init__(self) -> None:
        self.pool = ThreadPool(4)
        self.services: list[tether.Service] = [Echo(port=0), Heartbeat(), Cleanup()]

    @property
    def dependencies(self) -> list[tether.Service | list[tether.Service]]:
        return [self.pool, self.services]  # the pool first, then the three together

    async def on_started(self) -> None:
        print("ready", flush=True)  # the body of `with entrypoint(...) as loop:`


if __name__ == "__main__":
    # entrypoint(..., log_level="info", log_format="plain") + loop.run_forever()
    tether.run(App(), log_level="info", log_format="plain")
