"""`tether run --reload`, driven from a script: edit the code, the application restarts.

In a terminal you would run `tether run --reload greeter:service` and save a file;
here a script writes the module, starts the command, rewrites the module, and stops
the command with SIGTERM (Ctrl-C does the same), printing what the application says.
"""

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

GREETER = """
import tether


class Greeter(tether.Service):
    async def start(self) -> None:
        print("{greeting}, world", flush=True)

    async def stop(self) -> None:
        print("{greeting}: stopped gracefully", flush=True)


service = Greeter()
"""


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        module = Path(directory) / "greeter.py"
        module.write_text(GREETER.format(greeting="hello"))
        env = {**os.environ, "PYTHONPATH": directory, "PYTHONDONTWRITEBYTECODE": "1"}
        command = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tether", "run", "--reload", "--reload-dir", directory),
            *("greeter:service", "--log-format", "plain", "--log-level", "warning"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        output = command.stdout
        assert output is not None

        async def says() -> str:
            line = await asyncio.wait_for(output.readline(), 30)
            print(line.decode().rstrip())
            return line.decode()

        await says()  # hello, world: the first version runs (and is being watched)
        module.write_text(GREETER.format(greeting="bonjour"))  # saved in the editor
        await says()  # the old graph stops first ...
        await says()  # ... then the new code starts, in a new process
        command.send_signal(signal.SIGTERM)
        await says()
        print("exit code", await asyncio.wait_for(command.wait(), 30))


asyncio.run(main())
