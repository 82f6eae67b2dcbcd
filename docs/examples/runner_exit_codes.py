import asyncio
import subprocess
import sys

import tether


class Clean(tether.Service):
    async def on_started(self) -> None:
        self.request_stop()  # the root stops on its own: exit code 0


class Crashes(tether.Service):
    @tether.task
    async def work(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("lost the connection")  # a crash while running: 1


class FailsToStart(tether.Service):
    async def start(self) -> None:
        raise RuntimeError("cannot connect")  # startup failed: 3


SCENARIOS = {"clean": Clean, "crash": Crashes, "startup": FailsToStart}

if len(sys.argv) > 1:  # the child: run one scenario as a process
    tether.run(SCENARIOS[sys.argv[1]](), log_level="critical")

for name in SCENARIOS:
    code = subprocess.call([sys.executable, __file__, name])  # noqa: S603
    print(f"{name}: exit {code} ({tether.ExitCode(code).name})")
