import os
import signal

import tether


class Database(tether.Service):
    async def start(self) -> None:
        print("database up", flush=True)

    async def stop(self) -> None:
        print("database down", flush=True)


class Api(tether.Service):
    def __init__(self) -> None:
        self.db = Database()

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.db]

    async def on_started(self) -> None:
        print("ready", flush=True)
        # To end this example: the signal `systemctl stop` or Ctrl-C would send.
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    tether.run(Api(), log_format="plain")  # exits 0 after a graceful stop
