"""Tornado, Twisted and WSGI applications for the pre-fork tests, each given no address.

In a pre-fork worker each serves on the sockets the master bound (tether.listeners()).
``GET /`` answers the worker's pid, ``/busy`` once the test releases the worker from
synchronous work (see ``prefork_app.busy``), as ``prefork_aiohttp`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import tether
from tests.prefork.prefork_app import busy


def tornado() -> tether.Service:
    """A Tornado application on tether.ext.tornado."""
    import tornado.web

    from tether.ext.tornado import Server

    class Pid(tornado.web.RequestHandler):
        def get(self) -> None:
            if self.request.path == "/busy":
                busy()
            self.write(str(os.getpid()))

    return Server(tornado.web.Application([(r"/.*", Pid)]))


def twisted() -> tether.Service:
    """A twisted.web Site on tether.ext.twisted."""
    from twisted.web import resource, server

    from tether.ext.twisted import Listener, Reactor

    class Pid(resource.Resource):
        isLeaf = True  # noqa: N815 - Twisted's name

        def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted's name
            if request.path == b"/busy":
                busy()
            return str(os.getpid()).encode()

    return Listener(server.Site(Pid()), reactor=Reactor())


def wsgi() -> tether.Service:
    """A bare WSGI application on tether.ext.wsgi."""
    from tether.ext.wsgi import Server

    def pid(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/busy":
            busy()
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return Server(pid)
