"""The documentation site holds together: its examples run, its pages are reachable.

Every program in ``docs/examples/`` runs to completion as a subprocess of this
interpreter (exit 0; its stdout equal to ``<name>.out`` when that file exists); the
other files there are checked for what can be checked (TOML parses, the Kubernetes
manifest and the systemd units say what the tutorial claims). Every page is in the nav
of ``mkdocs.yml``, every ``--8<--`` include names a file (and section) that exists, and
the API reference lists every public name. ``make docs`` builds the site itself.
"""

from __future__ import annotations

import configparser
import importlib
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PROGRAMS = sorted(EXAMPLES.glob("*.py"))
PAGES = sorted(DOCS.rglob("*.md"))
# `--8<-- "path"` or `--8<-- "path:section"` (pymdownx.snippets), relative to the root.
INCLUDE = re.compile(r'^[ \t]*(?:[-*][ \t]+)?--8<--[ \t]+"([^"]+)"', re.MULTILINE)
# Variables of the machine that would change what an example does.
FOREIGN = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "PORT")


def test_there_are_examples() -> None:
    """The glob finds the examples (a moved directory would otherwise run nothing)."""
    assert len(PROGRAMS) >= 10, PROGRAMS


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda path: path.name)
def test_example_runs_to_completion(program: Path) -> None:
    """The example starts, does its work, stops by itself and exits 0."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    env["PYTHONUNBUFFERED"] = "1"
    try:
        result = subprocess.run(  # noqa: S603 - our own interpreter on our own file
            [sys.executable, str(program)],
            cwd=EXAMPLES,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"{program.name} did not finish within 45 s:\n{timeout.stderr!r}")
    assert result.returncode == 0, (
        f"{program.name} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    expected = program.with_suffix(".out")
    if expected.exists():
        assert result.stdout == expected.read_text(), result.stderr


def _nav_pages(items: Any) -> Iterator[str]:
    if isinstance(items, str):
        yield items
    elif isinstance(items, list):
        for item in items:
            yield from _nav_pages(item)
    elif isinstance(items, dict):
        for value in items.values():
            yield from _nav_pages(value)


def _mkdocs() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return config


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    """A page missing from the nav would be unreachable; a stale entry fails the build."""
    nav = list(_nav_pages(_mkdocs()["nav"]))
    pages = [path.relative_to(DOCS).as_posix() for path in PAGES if EXAMPLES not in path.parents]
    assert sorted(set(nav)) == sorted(nav), "a page is twice in the nav"
    assert sorted(nav) == sorted(pages)


def _includes() -> Iterator[tuple[Path, str, str | None]]:
    for page in PAGES:
        for target in INCLUDE.findall(page.read_text()):
            path, _, section = target.partition(":")
            yield page, path, section or None


def test_every_include_names_a_file_and_section_that_exist() -> None:
    """``--8<-- "docs/examples/x.py:part"`` needs the file and its ``[start:part]`` marker."""
    missing = []
    for page, path, section in _includes():
        file = ROOT / path
        if not file.is_file():
            missing.append(f"{page.relative_to(ROOT)}: {path} does not exist")
        elif section is not None and not section.isdigit():
            text = file.read_text()
            missing.extend(
                f"{page.relative_to(ROOT)}: {path} has no [{mark}:{section}]"
                for mark in ("start", "end")
                if f"--8<-- [{mark}:{section}]" not in text
            )
    assert not missing, "\n".join(missing)


def test_every_example_is_shown_on_a_page() -> None:
    """An example no page includes is tested for nothing a reader sees."""
    shown = {(ROOT / path).resolve() for _, path, _ in _includes()}
    files = [path for path in EXAMPLES.iterdir() if path.is_file() and path.suffix != ".pyc"]
    # The migration guide's programs, originals and ports (run by tests/migration).
    files += [p for p in (EXAMPLES / "migration").rglob("*") if p.is_file() and p.suffix != ".pyc"]
    assert [path.name for path in files if path.resolve() not in shown] == []


@pytest.mark.parametrize(
    "module",
    [
        "tether",
        "tether.testing",
        "tether.health",
        "tether.ext.aiohttp",
        "tether.ext.asgi",
        "tether.ext.wsgi",
        "tether.ext.tornado",
        "tether.ext.twisted",
    ],
)
def test_the_api_reference_lists_every_public_name(module: str) -> None:
    """Each name in a public module's ``__all__`` has its ``::: module.name`` entry."""
    framework = {
        "tether.ext.aiohttp": "aiohttp",
        "tether.ext.asgi": "uvicorn",
        "tether.ext.wsgi": "a2wsgi",
        "tether.ext.tornado": "tornado",
        "tether.ext.twisted": "twisted",
    }.get(module)
    if framework is not None:
        pytest.importorskip(framework)
    names = importlib.import_module(module).__all__
    reference = "\n".join(page.read_text() for page in (DOCS / "reference").glob("*.md"))
    listed = set(re.findall(r"^::: ([\w.]+)$", reference, re.MULTILINE))
    assert [name for name in names if f"{module}.{name}" not in listed] == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda path: path.name)
def test_toml_example_parses(path: Path) -> None:
    """A TOML file shown in the docs is valid TOML."""
    assert tomllib.loads(path.read_text())


def unit(path: Path) -> configparser.RawConfigParser:
    """A systemd unit file read as INI (repeated keys keep their last value)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(path.read_text())
    return parser


def test_the_systemd_units_say_what_the_tutorial_claims() -> None:
    """Pre-fork under Type=notify: KillMode=mixed, watchdog, adopted socket, bounded stop."""
    service = unit(EXAMPLES / "tether-notes.service")
    socket_unit = unit(EXAMPLES / "tether-notes.socket")
    assert {"Unit", "Service", "Install"} <= set(service.sections())
    section = service["Service"]
    # The master answers SIGHUP with RELOADING=1 + MONOTONIC_USEC, then READY=1; this
    # unit works on systemd 252 too (tests/test_systemd_units.py has both variants).
    assert section["Type"] == "notify"
    assert section["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert section["NotifyAccess"] == "main"  # only the master notifies
    assert int(section["WatchdogSec"]) > 0  # the master sends WATCHDOG=1
    assert section["KillMode"] == "mixed"  # SIGTERM to the master, which owns the workers
    command = section["ExecStart"].split()
    assert command[1:3] == ["run", "tutorial_http:server"]
    assert int(command[command.index("--workers") + 1]) > 1
    assert "--bind" not in command  # the master adopts the socket unit's socket
    # With --workers, the workers' deadline is --graceful-timeout (--shutdown-timeout
    # would be ignored); the master kills what outlives it, before systemd would.
    assert "--shutdown-timeout" not in command
    graceful = float(command[command.index("--graceful-timeout") + 1])
    assert graceful < float(section["TimeoutStopSec"])
    # Every worker would bind HEALTH_PORT: all but the first would fail to start.
    assert "HEALTH_PORT" not in section["Environment"]
    assert section["RestartPreventExitStatus"] == "3"  # tether.ExitCode.STARTUP_FAILED
    assert "tether-notes.socket" in service["Unit"]["Requires"]
    assert {"Unit", "Socket", "Install"} <= set(socket_unit.sections())
    assert socket_unit["Socket"]["ListenStream"] == "8080"


def test_the_kubernetes_manifest_probes_the_health_port_and_drains_in_time() -> None:
    """Probes on /readyz and /livez of HEALTH_PORT; drain + requests < deadline < grace."""
    yaml = pytest.importorskip("yaml")
    documents = list(yaml.safe_load_all((EXAMPLES / "k8s-notes.yaml").read_text()))
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == int(env["HEALTH_PORT"])
    assert ports["http"] == int(env["PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    command = container["command"]
    assert command[:3] == ["tether", "run", "tutorial_http:server"]
    # One process per pod (the drain needs it; see the tutorial): no pre-fork master.
    assert "--workers" not in command
    assert "--bind" not in command
    shutdown = float(command[command.index("--shutdown-timeout") + 1])
    drain_timeout = 10  # the servers' default
    assert float(env["DRAIN_DELAY"]) + drain_timeout < shutdown
    assert shutdown < pod["terminationGracePeriodSeconds"]
