import asyncio
import sqlite3

import tether


class Notes(tether.Service):
    """The notes store: a SQLite database (a real server's pool in a real application)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path

    async def start(self) -> None:
        # Autocommit: every note is written at once, visible to the other processes.
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("create table if not exists notes (text)")

    async def stop(self) -> None:
        self.db.close()

    def add(self, text: str) -> None:
        self.db.execute("insert into notes values (?)", (text,))

    def count(self) -> int:
        (count,) = self.db.execute("select count(*) from notes").fetchone()
        return int(count)


async def main() -> None:
    # A one-off script starts exactly what it uses, and stops it however the block ends.
    async with Notes() as notes:
        notes.add("buy milk")
        notes.add("call Ada")
        print(notes.count(), "notes")


if __name__ == "__main__":
    asyncio.run(main())
