"""The notes service in two pre-fork workers, as the `tether` command runs it.

Runs `tether run tutorial_http:server --workers 2 --bind tcp://127.0.0.1:PORT` as a
child process, calls it a few times, then stops it with SIGTERM as systemd would.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def call(method: str, url: str, data: bytes | None = None) -> tuple[int, str]:
    """One request; retried for up to 10 s while the master binds the port."""
    deadline = time.monotonic() + 10
    while True:
        try:
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, response.read().decode().strip()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        # One SQLite file for every worker: a note added in one is seen by the others.
        env = {**os.environ, "NOTES_DB": str(Path(directory) / "notes.db")}
        master = subprocess.Popen(  # noqa: S603 - the tether command of this interpreter
            [
                *(sys.executable, "-m", "tether", "run", "tutorial_http:server"),
                *("--workers", "2", "--bind", f"tcp://127.0.0.1:{port}"),
                *("--graceful-timeout", "10", "--log-format", "plain"),
            ],
            cwd=Path(__file__).parent,
            env=env,
        )
        try:
            print("POST /notes", *call("POST", f"{url}/notes", b"buy milk"))
            for _ in range(4):  # whichever worker the kernel hands the connection to
                print("GET /notes", *call("GET", f"{url}/notes"))
            print("GET /readyz", *call("GET", f"{url}/readyz"))
        finally:
            master.send_signal(signal.SIGTERM)  # the workers drain and stop, then the master
            code = master.wait(timeout=30)
    print("master exited with code", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
