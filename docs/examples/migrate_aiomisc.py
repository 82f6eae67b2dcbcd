import asyncio

import tether


# --8<-- [start:service]
class Echo(tether.Service):
    def __init__(self, port: int = 0) -> None:  # aiomisc: Service(port=...) kwargs
        self.port = port

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:  # aiomisc: stop(self, exception=None)
        self.server.close()
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()


# --8<-- [end:service]


# --8<-- [start:periodic]
class Heartbeat(tether.Service):
    beats = 0

    @tether.timer(0.01)  # aiomisc: PeriodicService with interval and callback()
    async def callback(self) -> None:
        self.beats += 1


# --8<-- [end:periodic]


# --8<-- [start:entrypoint]
class Both(tether.Service):
    def __init__(self) -> None:
        self.echo, self.heartbeat = Echo(), Heartbeat()

    @property
    def dependencies(self) -> list[list[tether.Service]]:
        return [[self.echo, self.heartbeat]]  # started together, as entrypoint does


async def main(app: Both) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.echo.port)
    writer.write(b"hello\n")
    print("echo:", (await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()


async def run() -> None:
    # aiomisc: with entrypoint(Echo(), Heartbeat()) as loop: loop.run_until_complete(main())
    async with Both() as app:
        await main(app)


asyncio.run(run())
# --8<-- [end:entrypoint]
