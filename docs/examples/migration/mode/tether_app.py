# mode's tutorial app on tether: each mode idiom is in the comment beside its port.
import asyncio
from functools import cached_property  # mode.utils.objects.cached_property

import tether


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    writer.close()


class Websockets(tether.Service):
    def __init__(self, port: int = 8081) -> None:  # no **kwargs, no super().__init__()
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:  # on_start
        print("STARTING WEBSOCKET SERVER")
        self._server = await asyncio.start_server(echo, "127.0.0.1", self.port)

    async def stop(self) -> None:  # on_stop
        print("STOPPING WEBSOCKET SERVER")
        if self._server is not None:
            self._server.close()


class Webserver(tether.Service):  # runs in a thread: wrapped in tether.ServiceThread below
    def __init__(self, port: int = 8000, bind: str = "127.0.0.1") -> None:
        self.port = port
        self.bind = bind
        self._srv: asyncio.Server | None = None

    async def start(self) -> None:  # on_start, in the thread's own loop
        self._srv = await asyncio.start_server(echo, self.bind, self.port)
        self.log.info("Serving on port %s", self.port)  # self.log names the service
        print("SERVING")

    async def stop(self) -> None:  # on_thread_stop: also runs in the thread
        print("STOPPING WEBSERVER")
        if self._srv is not None:
            self._srv.close()


class UserCache(tether.Service):
    def __init__(self) -> None:  # on_init
        self._cache: dict[str, str] = {}

    @tether.timer(0.05)  # @Service.timer(10)
    async def remove_expired(self) -> None:
        self._cache.clear()
        print("REMOVING EXPIRED USERS")


class AppService(tether.Service):
    def __init__(self, app: "App") -> None:
        self.app = app

    @property
    def dependencies(self) -> list[tether.Service]:  # on_init_dependencies
        return [self.app.websockets, self.app.webserver, self.app.user_cache]

    async def start(self) -> None:  # on_start: runs once its dependencies have started
        print("APP STARTING")

    async def stop(self) -> None:  # on_stop
        print("APP STOPPING")


class App:  # ServiceProxy: a plain class; tether.Lazy below defers building the graph
    def __init__(
        self, web_port: int = 8000, web_bind: str = "127.0.0.1", websocket_port: int = 8001
    ) -> None:
        self.web_port = web_port
        self.web_bind = web_bind
        self.websocket_port = websocket_port

    @cached_property
    def websockets(self) -> Websockets:  # no loop= or beacon=: tether tracks the graph
        return Websockets(port=self.websocket_port)

    @cached_property
    def webserver(self) -> tether.ServiceThread[Webserver]:  # mode: class Webserver(ServiceThread)
        return tether.ServiceThread(Webserver(port=self.web_port, bind=self.web_bind))

    @cached_property
    def user_cache(self) -> UserCache:
        return UserCache()


# ServiceProxy's _service: built when the graph first starts, named in logs "Lazy[app]".
app = tether.Lazy(AppService, App(web_port=0, websocket_port=0), name="app")

if __name__ == "__main__":
    tether.run(app, log_level="info")  # Worker(app, loglevel="info").execute_from_commandline()
