import asyncio
import dataclasses

import tether


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str
    pool_size: int = 10


class Database(tether.Service):
    def __init__(self, config: DbConfig) -> None:
        self.config = config

    async def start(self) -> None:
        print(f"database up ({self.config.pool_size} connections)")

    async def stop(self) -> None:
        print("database down")


class Api(tether.Service):
    def __init__(self, db: Database) -> None:  # no `dependencies`: the type is enough
        self.db = db

    async def start(self) -> None:
        print("api up")

    async def stop(self) -> None:
        print("api down")


config = (
    tether.Config()
    .add_dict({"db": {"url": "sqlite:///app.db"}})  # or .add_toml("app.toml")
    .add_env("APP", environ={"APP_DB_POOL_SIZE": "4"})  # os.environ when omitted
)
container = tether.Container(config=config)


async def main() -> None:
    async with container.started(Database) as db:  # a one-off script: the database only
        print("maintenance on", db.config.url)
    async with container.get(Api):  # the application: database, then api
        print("serving")


asyncio.run(main())
