# original_web on tether, run as a process by the tether command (no __main__ block):
#   tether run --plugin tether_web --workers 2 --bind tcp://127.0.0.1:8000
# buvar's name for each idiom is in the comment beside its port.
import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

from tether_db import Foo

import tether


@tether.section("greeting")  # class GreetingConfig(config.Config, section="greeting")
@dataclasses.dataclass
class GreetingConfig:
    text: str = "hi"


async def server(greeting: GreetingConfig, foo: Foo) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(f"{greeting.text} {foo.baz}\n".encode())
        await writer.drain()
        writer.close()

    # context.get(fork.Socket, name=...): the socket the master bound for this spec.
    (sock,) = tether.listeners(os.environ["BIND"])
    srv = await asyncio.start_server(hello, sock=sock)
    print(f"serving {os.getpid()}", flush=True)
    try:
        await asyncio.Event().wait()  # context.get(plugin.Cancel).wait(): a stop cancels
    finally:
        srv.close()
        with contextlib.suppress(asyncio.CancelledError):
            await srv.wait_closed()
        print(f"server closed {os.getpid()}", flush=True)


async def teardown() -> None:
    print(f"teardown {os.getpid()}", flush=True)


async def prepare(
    plugins: tether.Plugins, container: tether.Container, config: tether.Config
) -> AsyncIterator[object]:
    await plugins.load("tether_db")  # await load("original_db")
    # ConfigSource(toml.load(f), env_prefix="APP"), then await load(config):
    config.add_toml(Path(__file__).with_name("config.toml")).add_env("APP")
    greeting = container.get(GreetingConfig)  # await di.nject(GreetingConfig)
    foo = await container.aget(Foo, baz="baz")  # await di.nject(Foo, baz="baz")
    plugins.add_teardown(teardown)  # context.get(plugin.Teardown).add(teardown())
    yield server(greeting, foo)
