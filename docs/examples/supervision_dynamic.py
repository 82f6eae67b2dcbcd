"""Dynamic supervision: one supervised session per connection, built by the container."""

import asyncio

import tether


class Store(tether.Service):
    """Shared by every session: the container injects the one instance."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def start(self) -> None:
        print("store up")

    async def stop(self) -> None:
        print("store down; sessions seen:", ", ".join(self.seen))


class Session(tether.Service):
    """One connection. The supervisor starts one per client and removes it when it ends."""

    restart = tether.Restart.TEMPORARY  # a connection that ends is not restarted

    def __init__(
        self, store: Store, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.store = store
        self.reader = reader
        self.writer = writer

    @tether.task
    async def serve(self) -> None:
        self.name = (await self.reader.readline()).decode().strip()  # shows as Session[ada]
        self.store.seen.append(self.name)
        self.writer.write(f"hello {self.name}\n".encode())
        await self.writer.drain()
        await self.reader.read()  # until the client leaves
        self.request_stop()  # a normal exit: the supervisor stops and removes it

    async def stop(self) -> None:
        print(f"session {getattr(self, 'name', '?')} closed")
        self.writer.close()


class Server(tether.Service):
    """Accepts connections; each one becomes a child of the sessions supervisor."""

    def __init__(self, sessions: tether.Supervisor) -> None:
        self.sessions = sessions  # injected: the server depends on it, so it stops first

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()  # no more connections; the sessions stop after the server

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.sessions.start_child(Session, reader=reader, writer=writer)
        except tether.MaxChildrenError:
            writer.write(b"busy, try later\n")
            writer.close()
        except tether.ServiceStateError:  # a connection that arrives while we stop
            writer.close()


async def visit(port: int, who: str) -> asyncio.StreamWriter:
    """Connect as `who`, print the greeting, and stay connected."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{who}\n".encode())
    print(f"{who} got:", (await reader.readline()).decode().strip())
    return writer


def names(supervisor: tether.Supervisor) -> str:
    return ", ".join(tether.status(child).name for child in supervisor.which_children())


async def main() -> None:
    container = tether.Container()
    sessions = tether.Supervisor(
        [container.get(Store)],  # started first; the sessions added later need it
        max_children=2,  # at most two sessions at a time
        container=container,  # builds each Session, injecting the Store
    )
    container.add(sessions)
    server = container.get(Server)  # with the supervisor as its dependency
    async with server:
        ada = await visit(server.port, "ada")
        bob = await visit(server.port, "bob")
        await visit(server.port, "eve")  # a third one is turned away
        print("children:", names(sessions))
        ada.close()
        async with asyncio.timeout(5):
            while len(sessions.which_children()) > 2:  # until ada's session has gone
                await asyncio.sleep(0.01)
        print("ada left; children:", names(sessions))
        print("stopping")
    bob.close()


asyncio.run(main())
