# systemPY's REPL unit on tether: the units are services of one graph, and
# `tether repl tether_repl:unit` starts exactly that graph under an asyncio REPL.
import dataclasses
import sqlite3

import tether


@tether.section("app")  # ConfigUnit: a typed section of the configuration
@dataclasses.dataclass
class AppConfig:
    app_name: str = "MyProjectRepl"
    database: str = ":memory:"


class Database(tether.Service):  # MyDatabaseUnit
    def __init__(self, config: AppConfig) -> None:
        self.config = config

    async def start(self) -> None:  # on_startup
        self.db = sqlite3.connect(self.config.database)
        self.db.execute("create table users (name)")
        self.db.execute("insert into users values ('ada')")

    async def stop(self) -> None:  # on_shutdown
        self.db.close()

    def users(self) -> list[str]:
        return [name for (name,) in self.db.execute("select name from users")]


class AppRepl(tether.Service):  # AppReplUnit: the root; its dependencies are the units
    def __init__(self, config: AppConfig, database: Database) -> None:
        self.config = config  # repl_variables: reach them as root.config, root.database
        self.database = database

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.database]


# AppReplUnit(app_name=..., config=...): the container builds the graph from the types;
# configuration comes from files, the environment or `-c app.app_name=...`.
container = tether.Container(
    config=tether.Config().add_dict({"app": {"app_name": "MyProjectRepl"}})
)
unit = AppRepl  # tether repl tether_repl:unit  (unit.run_sync() in systemPY)
