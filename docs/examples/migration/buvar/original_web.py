# buvar's plugin app (buvar 0.44.18): config, DI, a plugin loading another, a server on
# the socket fork.stage bound, the cancel event and teardown. Plain asyncio stands in
# for buvar_aiohttp; 0.44 has no config.bool_var any more.
import asyncio
import os

import attr
from buvar import config, context, di, fork, plugin


@attr.s(auto_attribs=True)
class GreetingConfig(config.Config, section="greeting"):
    text: str = "hi"


async def server(sock, greeting: GreetingConfig, foo):
    async def hello(reader, writer):
        await reader.readline()
        writer.write(f"{greeting.text} {foo.baz}\n".encode())
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(hello, sock=sock)
    print(f"serving {os.getpid()}", flush=True)
    await context.get(plugin.Cancel).wait()  # SIGINT sets it
    srv.close()
    await srv.wait_closed()
    print(f"server closed {os.getpid()}", flush=True)


async def prepare(load: plugin.Loader):
    await load("original_db")
    await load(config)
    greeting = await di.nject(GreetingConfig)
    from original_db import Foo

    foo = await di.nject(Foo, baz="baz")  # the classmethod adapter, given baz
    sock = context.get(fork.Socket, name=os.environ["BIND"])
    context.get(plugin.Teardown).add(teardown())
    yield server(sock, greeting, foo)


async def teardown():
    print(f"teardown {os.getpid()}", flush=True)


if __name__ == "__main__":
    import toml
    from buvar import log

    log.LogConfig(tty=False, level="INFO").setup()
    components = context.current_context()
    with open(os.path.join(os.path.dirname(__file__), "config.toml")) as f:
        context.add(config.ConfigSource(toml.load(f), env_prefix="APP"))
    fork.stage(prepare, forks=2, sockets=[os.environ["BIND"]])
    print("master exits", flush=True)
