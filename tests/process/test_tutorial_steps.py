"""The tutorial's command lines, run as it says: from `docs/examples`, on its files.

Step 2 suggests `tether run`, `graph`, `check` and `repl` on `tutorial_service:digest`;
each is run here the way a reader would type it, and the REPL session shown on the page
is typed into a real `tether repl`.
"""

from __future__ import annotations

import asyncio
import signal

from tests.process.harness import ROOT, Tether

EXAMPLES = ROOT / "docs" / "examples"
DIGEST = "tutorial_service:digest"


def in_examples(*args: str) -> Tether:
    """`tether ARGS` as typed in `docs/examples` (the command puts it on sys.path)."""
    return Tether(*args, env={"PYTHONPATH": str(EXAMPLES)})


async def test_tether_run_reports_until_ctrl_c() -> None:
    """The module's digest runs until stopped: a report, then Ctrl-C stops it, code 0."""
    async with in_examples("run", DIGEST, "--log-format", "plain") as proc:
        await proc.line("digest: 1 notes")
        proc.send(signal.SIGINT)
        assert await proc.exit_code() == 0, proc.output
        assert any("Notes stopped" in line for line in proc.stderr), proc.output


async def test_tether_graph_and_check_name_both_services() -> None:
    """`graph` draws Digest over Notes; `check` validates without starting anything."""
    async with in_examples("graph", DIGEST) as proc:
        assert await proc.exit_code() == 0, proc.output
        assert "Digest" in proc.stdout[0]
        assert any("Notes" in line for line in proc.stdout[1:]), proc.output
    async with in_examples("check", DIGEST) as proc:
        assert await proc.exit_code() == 0, proc.output
        assert "the graph is valid" in proc.stdout[0]


async def test_the_repl_session_shown_in_step_2() -> None:
    """The page's session: add a note, count two, the digest running; Ctrl-D stops."""
    proc = in_examples("repl", DIGEST)
    try:
        await proc.start(stdin=asyncio.subprocess.PIPE)
        await proc.line("bound: root, digest, notes", stream="stderr")
        assert proc.proc is not None
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(b'notes.add("call Ada")\nnotes.count()\ndigest.running\n')
        await proc.until(
            lambda: (
                any(line.endswith("2") for line in proc.stdout)
                and any(line.endswith("True") for line in proc.stdout)
            ),
            "2 and True",
        )
        proc.proc.stdin.close()
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
