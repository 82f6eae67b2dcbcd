import asyncio
import sqlite3
import threading

import tether


class Store(tether.BlockingService):
    """Blocking code, blocking hooks: plain `def`, no event loop needed."""

    def start(self) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute("create table notes (text)")
        print("store: opened in", thread())

    def stop(self) -> None:
        self.db.close()
        print("store: closed in", thread())


class Api(tether.Service):
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def dependencies(self) -> list[Store]:
        return [self.store]  # a blocking dependency of an async service

    async def start(self) -> None:
        print("api: started in", thread())


def thread() -> str:
    main = threading.current_thread() is threading.main_thread()
    return "the main thread" if main else "a worker thread"


# On its own, a blocking graph starts and stops in the calling thread, with `with`.
with Store() as store:
    store.db.execute("insert into notes values ('from a script')")


# Inside an async graph its hooks run in a worker thread: the event loop never blocks.
async def main() -> None:
    async with Api(Store()):
        pass


asyncio.run(main())
