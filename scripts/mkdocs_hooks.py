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
    problems = _culprits(html_content)
    if problems:
        lines = "\n".join(f"  {owner}: {what}" for owner, what in problems)
        raise PluginError(
            f"{page.file.src_uri} shows reStructuredText markup; docstrings are Google "
            f"style with Markdown (`code`, [Name][tether.Name], ```python fences):\n{lines}"
        )
    return html_content
