import asyncio
import http.server
import logging
import os
import threading
import urllib.request

import tether
from tether.health import Health


class Handler(http.server.BaseHTTPRequestHandler):
    """Blocking code, as gevent or eventlet let you write it: here in plain threads."""

    def do_GET(self) -> None:
        body = urllib.parse.unquote(self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Graceful(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight


class LegacyServer(tether.BlockingService):
    """A blocking server: its hooks run in a worker thread, the graph's loop runs on."""

    def __init__(self, port: int, health: Health) -> None:
        self.port = port
        self.health = health

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        return [self.health]

    def start(self) -> None:
        self.httpd = Graceful(("127.0.0.1", self.port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="legacy")
        self.thread.start()
        logging.getLogger("legacy").info("LegacyServer serving on %s", self.url)

    def stop(self) -> None:
        self.httpd.shutdown()  # stops accepting, returns once serve_forever has
        self.httpd.server_close()  # joins the threads still answering
        self.thread.join()


health = Health(
    port=int(os.environ.get("HEALTH_PORT", "0")),
    drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1")),
)
server = LegacyServer(int(os.environ.get("PORT", "0")), health)


class App(tether.Service):
    """The async graph's root; the blocking server is one of its dependencies."""

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        return [server]


app = App()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        body: bytes = response.read()
        return body.decode()


async def try_it() -> None:
    async with app:
        # a blocking call from async code: in a thread, the loop stays responsive
        print(await asyncio.to_thread(fetch, f"{server.url}/hello"))


if __name__ == "__main__":
    asyncio.run(try_it())  # as a process: tether.run(app)
