"""A renderer in its own thread and loop, an application built lazily on first start.

Importing this module builds nothing: no event loop, thread or socket exists until
``tether.run(app)`` starts it (tests import it and check).
"""

from __future__ import annotations

import asyncio
import threading

import tether


class Renderer(tether.Service):
    """Runs in the thread of its ServiceThread, with that thread's event loop."""

    async def start(self) -> None:
        self.pages = 0
        print(f"renderer up in {threading.current_thread().name!r}")

    async def stop(self) -> None:
        print(f"renderer down after {self.pages} page(s)")

    async def render(self, title: str) -> str:
        self.pages += 1
        await asyncio.sleep(0)  # real work would await here, off the main loop
        here = tether.ServiceThread.current()
        assert here is not None
        await here.call_parent(print, f"rendered {title!r}")  # back on the main loop
        return f"<h1>{title}</h1>"


class App(tether.Service):
    """Runs in the main loop; its renderer runs in a thread of its own."""

    def __init__(self) -> None:
        self.renderer = tether.ServiceThread(Renderer(), heartbeat=1.0)

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.renderer]

    async def start(self) -> None:
        self.add_task(self.serve_once())

    async def serve_once(self) -> None:
        page = await self.renderer.call(self.renderer.service.render, "hello")
        print(f"main loop got {page}")
        self.request_stop()  # the example stops by itself


app = tether.Lazy(App)  # built when first started, not at import

if __name__ == "__main__":
    tether.run(app)
