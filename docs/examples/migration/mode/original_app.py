# mode's tutorial app (its page, "Services" to "Worker"), on mode-streaming 0.7.1:
# ServiceProxy now lives in mode.proxy; asyncio servers stand in for websockets/aiohttp.
import asyncio
from typing import Any

from mode import Service, ServiceT
from mode.proxy import ServiceProxy
from mode.threads import ServiceThread
from mode.utils.objects import cached_property


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    writer.close()


class Websockets(Service):
    def __init__(self, port: int = 8081, **kwargs: Any) -> None:
        self.port = port
        self._server = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        print("STARTING WEBSOCKET SERVER")
        self._server = await asyncio.start_server(echo, "127.0.0.1", self.port)

    async def on_stop(self) -> None:
        print("STOPPING WEBSOCKET SERVER")
        if self._server is not None:
            self._server.close()


class Webserver(ServiceThread):
    def __init__(self, port: int = 8000, bind: str = "127.0.0.1", **kwargs: Any) -> None:
        self.port = port
        self.bind = bind
        self._srv = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        # self.loop is the event loop in this thread
        self._srv = await asyncio.start_server(echo, self.bind, self.port)
        self.log.info("Serving on port %s", self.port)
        print("SERVING")

    async def on_thread_stop(self) -> None:
        print("STOPPING WEBSERVER")
        self._srv.close()


class UserCache(Service):
    def on_init(self) -> None:
        self._cache: dict[str, str] = {}

    @Service.timer(0.05)  # execute every 50 ms (10 s on mode's page)
    async def _remove_expired(self) -> None:
        self._cache.clear()
        print("REMOVING EXPIRED USERS")


class AppService(Service):
    # the "real" service that App.start() will run

    def __init__(self, app: "App", **kwargs: Any) -> None:
        self.app = app
        super().__init__(**kwargs)

    def on_init_dependencies(self) -> list[ServiceT]:
        return [
            self.app.websockets,
            self.app.webserver,
            self.app.user_cache,
        ]

    async def on_start(self) -> None:
        print("APP STARTING")

    async def on_stop(self) -> None:
        print("APP STOPPING")


class App(ServiceProxy):
    def __init__(
        self,
        web_port: int = 8000,
        web_bind: str = "127.0.0.1",
        websocket_port: int = 8001,
        **kwargs: Any,
    ) -> None:
        self.web_port = web_port
        self.web_bind = web_bind
        self.websocket_port = websocket_port
        super().__init__(**kwargs)  # missing on mode's page; the loop and beacon need it

    @cached_property
    def _service(self) -> ServiceT:
        return AppService(self)

    @cached_property
    def websockets(self) -> Websockets:
        return Websockets(port=self.websocket_port, loop=self.loop, beacon=self.beacon)

    @cached_property
    def webserver(self) -> Webserver:
        return Webserver(port=self.web_port, bind=self.web_bind, loop=self.loop, beacon=self.beacon)

    @cached_property
    def user_cache(self) -> UserCache:
        return UserCache(loop=self.loop, beacon=self.beacon)


app = App(web_port=0, websocket_port=0)  # 0: any free port

if __name__ == "__main__":
    from mode import Worker

    Worker(app, loglevel="info").execute_from_commandline()
