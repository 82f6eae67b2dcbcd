"""tether.ext.asgi with FastAPI: components reach handlers through FastAPI's dependencies.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations
at runtime, and these handlers are defined inside the test.
"""

from typing import Annotated

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

import fastapi
from starlette.requests import Request

import tether
from tests.httpclient import fetch
from tether.ext.asgi import Server, get


class Database(tether.Service):
    """A component the handlers use."""

    def __init__(self) -> None:
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1


def database(request: Request) -> Database:
    """The FastAPI dependency: the graph's running Database."""
    return get(request, Database)


async def test_fastapi_dependencies_get_components_of_the_graph() -> None:
    """A dependency wrapping get(request, T) hands the handler the running service."""
    app = fastapi.FastAPI()

    @app.get("/running")
    async def running(db: Annotated[Database, fastapi.Depends(database)]) -> dict[str, object]:
        return {"running": db.running, "starts": db.starts}

    container = tether.Container()
    server = Server(app, port=0, container=container, uses=[Database])
    async with server:
        response = await fetch(f"{server.url}/running")
    assert response.json() == {"running": True, "starts": 1}
