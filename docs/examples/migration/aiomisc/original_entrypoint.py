# An aiomisc program (aiomisc 18.0.37): services under entrypoint, a periodic service,
# a PeriodicCallback, a threaded function and the runner's options.
import asyncio
import threading

import aiomisc
from aiomisc.service.periodic import PeriodicService


@aiomisc.threaded
def checksum(data: bytes) -> int:  # runs in entrypoint's thread pool
    assert threading.current_thread() is not threading.main_thread()
    return sum(data) % 256


class Echo(aiomisc.Service):
    port: int = 0  # aiomisc: Service(port=...) keyword arguments become attributes

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        print(f"echo started on {self.port}", flush=True)

    async def stop(self, exception: Exception | None = None) -> None:
        self.server.close()
        await self.server.wait_closed()
        print("echo stopped", flush=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(f"{line.decode().strip()} {await checksum(line)}\n".encode())
        await writer.drain()
        writer.close()


class Heartbeat(PeriodicService):
    async def callback(self) -> None:
        print("beat", flush=True)


class Cleanup(aiomisc.Service):
    async def start(self) -> None:
        self.periodic = aiomisc.PeriodicCallback(self.sweep)
        self.periodic.start(0.05)
        print("cleanup started", flush=True)

    async def sweep(self) -> None:
        print("sweep", flush=True)

    async def stop(self, exception: Exception | None = None) -> None:
        await self.periodic.stop(return_exceptions=True)
        print("cleanup stopped", flush=True)


if __name__ == "__main__":
    with aiomisc.entrypoint(
        Echo(port=0),
        Heartbeat(interval=0.05),
        Cleanup(),
        log_level="info",
        log_format="plain",
        pool_size=4,
    ) as loop:
        print("ready", flush=True)  # the services started, the signal handlers are set
        loop.run_forever()
