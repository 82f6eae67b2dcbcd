import os
import signal

from tutorial_script import Notes

import tether


class Digest(tether.Service):
    """Reports how many notes there are, every `interval` seconds: a long-running service."""

    def __init__(self, notes: Notes, interval: float = 1.0, stop_after: int = 0) -> None:
        self.notes = notes
        self.interval = interval
        self.stop_after = stop_after  # 0: run until told to stop
        self.ticks = 0

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.notes]  # started before Digest, stopped after it

    async def start(self) -> None:
        self.notes.add("started")

    @tether.timer(lambda self: self.interval)
    async def report(self) -> None:
        self.ticks += 1
        print(f"digest: {self.notes.count()} notes", flush=True)
        if self.ticks == self.stop_after:
            # To end this example: what Ctrl-C or `systemctl stop` would send.
            os.kill(os.getpid(), signal.SIGTERM)


# What `tether run tutorial_service:digest` (or `tether repl ...`) runs: until Ctrl-C.
digest = Digest(Notes())

if __name__ == "__main__":
    # The example: three reports 0.1 s apart, then it stops itself with SIGTERM.
    tether.run(Digest(Notes(), interval=0.1, stop_after=3), log_format="plain")
