"""The tutorial's systemd units, as systemd itself reads them.

Two service units: ``tether-notes.service`` works on every systemd in use (``Type=notify``
with ``ExecReload=`` sending SIGHUP: Debian 12, RHEL 9 and Ubuntu 22.04 ship systemd 252
or older, which do not know ``Type=notify-reload``), and
``tether-notes-notify-reload.service`` for systemd 253 and later. ``systemd-analyze
verify`` checks each one on this machine when systemd is installed: a unit systemd
cannot fully parse (``Failed to parse service type, ignoring``) fails the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs_examples import unit

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
PORTABLE = "tether-notes.service"
NOTIFY_RELOAD = "tether-notes-notify-reload.service"


def systemd_version() -> int | None:
    """The installed systemd's version (``systemd-analyze --version``), None without it."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    shown = subprocess.run(  # noqa: S603 - a fixed command
        [tool, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    found = re.match(r"systemd (\d+)", shown)
    return int(found.group(1)) if found else None


VERSION = systemd_version()


def verify(name: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of unit ``name`` installed as tether-notes.service.

    The unit's ExecStart names /opt/notes/venv/bin/tether, which systemd checks exists:
    the copy names this environment's ``tether`` instead, nothing else changes.
    """
    text = (EXAMPLES / name).read_text()
    here = str(Path(sys.executable).with_name("tether"))
    (directory / "tether-notes.service").write_text(
        text.replace("/opt/notes/venv/bin/tether", here)
    )
    shutil.copy(EXAMPLES / "tether-notes.socket", directory / "tether-notes.socket")
    tool = shutil.which("systemd-analyze")
    assert tool is not None
    return subprocess.run(  # noqa: S603 - our own unit files
        [
            tool,
            "verify",
            "--man=no",
            str(directory / "tether-notes.socket"),
            str(directory / "tether-notes.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_portable_unit_reloads_with_exec_reload_under_type_notify() -> None:
    """systemd 252 and older: Type=notify, and ExecReload= sends SIGHUP to the master."""
    section = unit(EXAMPLES / PORTABLE)["Service"]
    assert section["Type"] == "notify"
    assert section["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_notify_reload_unit_lets_systemd_send_sighup_itself() -> None:
    """systemd 253 and later: Type=notify-reload sends SIGHUP and waits for READY=1."""
    section = unit(EXAMPLES / NOTIFY_RELOAD)["Service"]
    assert section["Type"] == "notify-reload"
    assert "ExecReload" not in section


def test_the_two_units_differ_only_in_how_they_reload() -> None:
    """Everything but Type= and ExecReload= is the same in both units."""
    portable, newer = unit(EXAMPLES / PORTABLE), unit(EXAMPLES / NOTIFY_RELOAD)
    assert portable.sections() == newer.sections()
    for section in portable.sections():
        ours = {k: v for k, v in portable[section].items() if k not in ("Type", "ExecReload")}
        theirs = {k: v for k, v in newer[section].items() if k not in ("Type", "ExecReload")}
        assert ours == theirs, section


@pytest.mark.skipif(VERSION is None, reason="systemd-analyze is not installed")
def test_systemd_verifies_the_portable_unit_without_a_warning(tmp_path: Path) -> None:
    """The portable unit parses cleanly on the systemd installed here, whatever its age."""
    result = verify(PORTABLE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(
    VERSION is None or VERSION < 253,
    reason=f"Type=notify-reload needs systemd 253 or later; here: {VERSION or 'none'}",
)
def test_systemd_verifies_the_notify_reload_unit_without_a_warning(tmp_path: Path) -> None:
    """On systemd 253 and later the notify-reload unit parses cleanly too."""
    result = verify(NOTIFY_RELOAD, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(
    VERSION is None or VERSION >= 253, reason="the old systemd's reading of the newer unit"
)
def test_systemd_252_would_silently_misread_the_notify_reload_unit(tmp_path: Path) -> None:
    """On systemd 252 or older, verify shows why the portable unit exists: the newer
    unit's Type= is ignored (it would run as Type=simple, without a reload command)."""
    result = verify(NOTIFY_RELOAD, tmp_path)
    assert "Failed to parse service type" in result.stderr, result.stderr
