"""An aiomisc program and its tether port: served the same, stopped the same.

The peer is aiomisc 18.0.37 (the `peers` extra). Both programs serve an echo that
checksums in a thread pool, run a periodic service and a periodic callback, and stop
on a real signal; the test compares the answers, the stop lines and the exit code.
(`CronCallback` is left out: aiomisc's cron extra pins croniter<3, tether's cron extra
needs croniter 5, and the two cannot be installed together.)
"""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from tests.conftest import bounded
from tests.process.harness import Tether

from .programs import MIGRATION, needs

HERE = MIGRATION / "aiomisc"
STOPPED = ["cleanup stopped", "echo stopped"]


async def serve(program: str, sig: signal.Signals) -> tuple[str, list[str], int]:
    """Run it; once ready, call the echo, wait for the timers, then signal it."""
    proc = Tether(program=(str(HERE / program),))
    await proc.start()
    try:
        await proc.line("ready")
        await proc.until(lambda: {"beat", "sweep"} <= set(proc.stdout), "beat and sweep")
        port = int(re.findall(r"echo started on (\d+)", "\n".join(proc.stdout))[0])
        reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
        writer.write(b"hello\n")
        answer = (await bounded(reader.readline())).decode().strip()
        writer.close()
        await writer.wait_closed()
        proc.send(sig)
        code = await proc.exit_code(30)
    finally:
        await proc.__aexit__()
    stopped = sorted(line for line in proc.stdout if line.endswith(" stopped"))
    return answer, stopped, code


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
async def test_the_services_serve_tick_and_stop_gracefully_as_under_aiomisc(
    sig: signal.Signals,
) -> None:
    """The echo answers with a checksum made in a thread; both timers tick; a stop
    signal stops every service (aiomisc stops them all at once; so do the three
    listed together here) and the process exits 0."""
    answer, stopped, code = await serve("tether_entrypoint.py", sig)
    assert answer == f"hello {sum(b'hello' + bytes([10])) % 256}"
    assert stopped == STOPPED
    assert code == 0
    needs("aiomisc")
    assert await serve("original_entrypoint.py", sig) == (answer, stopped, code)
