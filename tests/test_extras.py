"""Extras are named where they are needed: in the error a missing one causes, and in the docs.

``import tether`` needs nothing beyond the standard library; loading config sections
needs msgspec (``tether[config]``), serving aiohttp needs aiohttp, and so on. A user
meets the need either in an error that names the section, the extra and the command,
or, before that, on the page that shows the code.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INCLUDE = re.compile(r'^[ \t]*(?:[-*][ \t]+)?--8<--[ \t]+"([^":]+)(?::([\w-]+))?"', re.MULTILINE)

# What in an example needs which extra.
NEEDS = {
    "config": re.compile(r"@tether\.section\("),
    "aiohttp": re.compile(r"tether\.ext\.aiohttp|^\s*(?:import|from) aiohttp\b", re.MULTILINE),
    "asgi": re.compile(r"tether\.ext\.asgi"),
    "wsgi": re.compile(r"tether\.ext\.wsgi"),
    "tornado": re.compile(r"tether\.ext\.tornado"),
    "twisted": re.compile(r"tether\.ext\.twisted"),
    "rloop": re.compile(r"^\s*import rloop\b", re.MULTILINE),
    "cron": re.compile(r"@tether\.cron\("),
    "testing": re.compile(r"\btether_(?:start|scope|plugins)\b"),
}


def _included(page: Path) -> str:
    """The text of the examples ``page`` includes (only the named section, if one is)."""
    parts = []
    for path, section in INCLUDE.findall(page.read_text()):
        text = (ROOT / path).read_text()
        if section:
            start = text.index(f"--8<-- [start:{section}]")
            text = text[start : text.index(f"--8<-- [end:{section}]", start)]
        parts.append(text)
    return "\n".join(parts)


PAGES = sorted(p for p in DOCS.rglob("*.md") if p.name != "changelog.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_a_page_names_the_extra_its_examples_need(page: Path) -> None:
    """A page showing code that needs an extra says `pip install 'tether[extra]'`."""
    shown = _included(page)
    text = page.read_text()
    missing = [
        extra
        for extra, needs in NEEDS.items()
        if needs.search(shown) and f"tether[{extra}]" not in text
    ]
    assert missing == [], f"{page.relative_to(ROOT)} shows code that needs {missing}"


def test_loading_a_section_without_msgspec_names_the_section_and_the_extra(
    tmp_path: Path,
) -> None:
    """Without msgspec, the error names the section being loaded and what to install."""
    program = textwrap.dedent(
        """
        import sys
        sys.modules["msgspec"] = None  # as if it were not installed

        import dataclasses
        import tether

        @tether.section("db")
        @dataclasses.dataclass
        class DbConfig:
            url: str = "sqlite://"

        class Database(tether.Service):
            def __init__(self, config: DbConfig) -> None:
                self.config = config

        try:
            tether.Container().get(Database)
        except tether.ConfigError as exc:
            print(exc)
        """
    )
    result = subprocess.run(  # noqa: S603 - our interpreter
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
    )
    message = result.stdout.strip()
    assert message.startswith("Loading the config section DbConfig [db] needs msgspec"), message
    assert "pip install 'tether[config]'" in message


@pytest.mark.parametrize(
    ("module", "dependency", "extra"),
    [
        ("aiohttp", "aiohttp", "aiohttp"),
        ("asgi", "uvicorn", "asgi"),
        ("wsgi", "a2wsgi", "wsgi"),
        ("wsgi", "uvicorn", "wsgi"),
        ("tornado", "tornado", "tornado"),
        ("twisted", "twisted", "twisted"),
        ("otel", "opentelemetry", "otel"),
        ("prometheus", "prometheus_client", "prometheus"),
    ],
)
def test_an_integration_without_its_extra_says_which_to_install(
    module: str, dependency: str, extra: str
) -> None:
    """Importing `tether.ext.X` without its framework names the package and the extra."""
    program = textwrap.dedent(
        f"""
        import sys
        sys.modules[{dependency!r}] = None  # as if it were not installed
        try:
            import tether.ext.{module}
        except ModuleNotFoundError as error:
            print(error.name)
            print(error)
        """
    )
    found = subprocess.run(  # noqa: S603 - our interpreter
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    name, message = found.stdout.splitlines()
    assert name == dependency
    assert message == (
        f"tether.ext.{module} needs {dependency}, which is not installed: "
        f"pip install 'tether[{extra}]'"
    )
