"""The blocked-loop detector: a task calls time.sleep(0.3) with blocking_timeout=0.1."""

import asyncio
import os
import re
import subprocess
import sys
import time

import tether


class Prices(tether.Service):
    @tether.task
    async def refresh(self) -> None:
        await asyncio.sleep(0.05)
        self.fetch()  # holds the event loop for 0.3 s
        await asyncio.sleep(0.05)  # the loop turns again: the block is counted
        print("loop_blocks:", tether.status(self).loop_blocks)
        self.request_stop()

    def fetch(self) -> None:
        time.sleep(0.3)  # a blocking call in async code: nothing else runs meanwhile


if sys.argv[1:] == ["child"]:  # the child: the service, run as a process
    tether.run(Prices(), blocking_timeout=0.1, log_format="plain")

# The parent runs the child and prints what the detector logged, without the timestamps,
# this file's directory and the durations (they vary from run to run).
child = subprocess.run(  # noqa: S603
    [sys.executable, __file__, "child"], capture_output=True, text=True, check=True
)
print(child.stdout, end="")
here = os.path.dirname(os.path.abspath(__file__)) + os.sep  # noqa: PTH100, PTH120
shown = False
for line in child.stderr.splitlines():
    if line.startswith("  "):  # the stack, under the warning
        if shown:
            print(line.replace(here, ""))
        continue
    message = re.sub(r"^\S+ \S+ ", "", line)  # the date and time
    shown = "tether.blocking" in message or "blocked" in message
    if shown:
        print(re.sub(r"\d+\.\d\ds", "N.NNs", message.replace(here, "")))
