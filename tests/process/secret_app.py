"""A service whose failures happen with a revealed secret in a local variable.

The password comes from the environment (``APP_DB_PASSWORD``) into a ``tether.Secret``;
the code reveals it to connect, as a user would, and the connection fails. Whatever
tether logs about it, in any format, must not contain the password.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

import tether


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str = "postgres://db.example/app"
    password: tether.Secret[str] = dataclasses.field(default_factory=lambda: tether.Secret(""))


def connect(url: str, password: str) -> None:
    attempt = {"url": url, "password": password}
    raise ConnectionError(f"could not connect to {attempt['url']}")


class Database(tether.Service):
    def __init__(self, config: DbConfig) -> None:
        self.config = config

    async def start(self) -> None:
        password = self.config.password.reveal()
        if os.environ.get("FAIL_IN") == "callback":
            # An exception in a loop callback whose argument is the password.
            asyncio.get_running_loop().call_soon(connect, self.config.url, password)
            asyncio.get_running_loop().call_soon(self.request_stop)
            return
        connect(self.config.url, password)


container = tether.Container(config=tether.Config().add_env("APP"))
