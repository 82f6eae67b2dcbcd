import os
import signal

from tutorial_script import Notes

import tether


class Digest(tether.Service):
    """Reports how many notes there are, every second: a long-running service."""

    def __init__(self, notes: Notes) -> None:
        self.notes = notes
        self.ticks = 0

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.notes]  # started before Digest, stopped after it

    async def start(self) -> None:
        self.notes.add("started")

    @tether.timer(0.1)  # a second or a minute in real life
    async def report(self) -> None:
        self.ticks += 1
        print(f"digest: {self.notes.count()} notes", flush=True)
        if self.ticks == 3:
            # To end this example: what Ctrl-C or `systemctl stop` would send.
            os.kill(os.getpid(), signal.SIGTERM)


digest = Digest(Notes())

if __name__ == "__main__":
    tether.run(digest, log_format="plain")  # or: tether run tutorial_service:digest
