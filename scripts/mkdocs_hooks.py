"""MkDocs hooks: the site shows tether's version, and fails on raw reST markup.

The header reads `tether VERSION` (the version in pyproject.toml), and the repository is
linked when pyproject.toml's `[project.urls]` names it (`Repository`).

The build fails when reStructuredText markup reaches a rendered page.

tether's docstrings are Google style with Markdown markup (what mkdocstrings parses).
A Sphinx role (`:class:`, `:func:`, `:meth:` ...), a `::` literal-block marker, a
directive (`.. note::`) or a reST table rule left in a docstring would show on the site
as raw text; this hook turns each into a build error naming the page and the object.
"""

from __future__ import annotations

import html
import re
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

# Text outside <code> and <pre>: roles render as `:class:` followed by a code span.
ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const|ref|doc|term):(?=<code>|`)"
)
LITERAL_MARKER = re.compile(r"::\s*</p>")
DIRECTIVE = re.compile(r"(?:^|>)\s*\.\. [a-z-]+::")
TABLE_RULE = re.compile(r"(?:^|>)\s*={2,}(?:\s+={2,})+\s*(?:<|$)", re.MULTILINE)
CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.DOTALL)
# mkdocstrings gives each object a heading whose id is its path: name the culprit.
HEADING = re.compile(r'<h\d id="(tether[\w.]*)"')

# Docstrings of the engine modules, converted by the engine rewrite; until then, the
# objects listed here may show raw markup. Each entry must still need its exemption.
PENDING: dict[str, str] = {
    "tether.check": "src/tether/_graph.py (the engine's docstrings convert with the engine)",
}


PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def on_config(config: Any, **_: Any) -> Any:
    """Put the version in the site's name and link the repository, from pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    config["site_name"] = f"{config['site_name']} {project['version']}"
    repository = project.get("urls", {}).get("Repository")
    if repository and not config.get("repo_url"):
        config["repo_url"] = repository
        config["repo_name"] = repository.rstrip("/").rsplit("/", 2)[-2:][-1]
    return config


def _culprits(content: str) -> list[tuple[str, str]]:
    found = []
    text = CODE.sub(lambda m: "<code></code>" if m.group(1) == "code" else "", content)
    owner = "the page"
    position = 0
    for heading in [*HEADING.finditer(text), None]:
        end = heading.start() if heading is not None else len(text)
        chunk = text[position:end]
        for pattern, what in (
            (ROLE, "a Sphinx role"),
            (LITERAL_MARKER, "a reST '::' literal-block marker"),
            (DIRECTIVE, "a reST directive"),
            (TABLE_RULE, "a reST table"),
        ):
            for match in pattern.finditer(chunk):
                shown = chunk[match.start() : match.end() + 40]
                snippet = html.unescape(re.sub(r"<[^>]+>", "", shown))
                found.append((owner, f"{what}: {snippet.strip()!r}"))
        if heading is not None:
            owner = heading.group(1)
            position = heading.start()
    return found


def on_page_content(html_content: str, page: Any, **_: Any) -> str:
    """Raise when the rendered page shows reST markup outside code."""
    culprits = _culprits(html_content)
    _Seen.raw.update(owner for owner, _what in culprits if owner in PENDING)
    problems = [(owner, what) for owner, what in culprits if owner not in PENDING]
    if problems:
        lines = "\n".join(f"  {owner}: {what}" for owner, what in problems)
        raise PluginError(
            f"{page.file.src_uri} shows reStructuredText markup; docstrings are Google "
            f"style with Markdown (`code`, [Name][tether.Name], ```python fences):\n{lines}"
        )
    return html_content


def on_post_build(**_: Any) -> None:
    """An exemption whose object renders cleanly now must go."""
    stale = [name for name in PENDING if name not in _Seen.raw]
    if stale:
        raise PluginError(
            f"docs/hooks.py: PENDING exempts {', '.join(stale)}, which rendered without "
            f"reST markup: remove the exemption."
        )


class _Seen:
    raw: set[str] = set()  # noqa: RUF012 - build-wide record, reset per build


def on_pre_build(**_: Any) -> None:
    """Start each build (mkdocs serve rebuilds) with nothing seen."""
    _Seen.raw = set()
