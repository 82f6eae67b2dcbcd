"""The docstrings are Google style with Markdown markup, everywhere (what the site parses).

`make docs` fails when reST markup reaches a rendered page (scripts/mkdocs_hooks.py);
this test holds every docstring to the same rule, rendered or not, and runs with the
suite: no Sphinx roles, no `::` literal blocks, no double backticks, no directives.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tether"
MODULES = sorted(SRC.rglob("*.py"))
# The engine's modules convert with the engine rewrite; each must still need it.

RULES = {
    "a Sphinx role": re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`"),
    "a '::' literal-block marker (use a ```python fence)": re.compile(r"::[ \t]*$", re.MULTILINE),
    "double backticks (Markdown code is `x`)": re.compile(r"``[^`\n]+``"),
    "a reST directive": re.compile(r"^\s*\.\. [a-z-]+::", re.MULTILINE),
}


def docstrings(path: Path) -> list[tuple[int, str]]:
    """Every docstring (and attribute docstring) of the module, with its line."""
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.value.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]


def problems(path: Path) -> list[str]:
    found: list[str] = []
    for line, text in docstrings(path):
        without_fences = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        found.extend(
            f"{path.relative_to(SRC)}:{line}: {what}"
            for what, pattern in RULES.items()
            if pattern.search(without_fences)
        )
    return found


def test_the_modules_are_found() -> None:
    """The glob reaches the package (a moved tree would otherwise check nothing)."""
    assert len(MODULES) > 30


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_docstrings_use_markdown_not_rest(path: Path) -> None:
    """A docstring shows `code`, [links][tether.Name] and ```python fences only."""
    assert problems(path) == []


def test_the_docs_build_names_raw_markup_that_reaches_a_page() -> None:
    """`make docs` fails on a role, a `::` marker, a directive or a reST table in a page,
    naming the object whose docstring holds it; code blocks may show any of them."""
    pytest.importorskip("mkdocs")
    import importlib.util

    path = SRC.parents[1] / "scripts" / "mkdocs_hooks.py"
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", path)
    assert spec is not None
    assert spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (
        '<h2 id="tether.Lazy">Lazy</h2><p>See :class:<code>tether.Container</code> and::</p>'
        "<p>== ====</p>"
        '<h2 id="tether.run">run</h2><p>Fine: <code>:class:`x`</code></p>'
        "<pre><code>.. note:: in code</code></pre>"
    )
    found = hooks._culprits(page)
    assert [owner for owner, _ in found] == ["tether.Lazy"] * 3
    assert "Sphinx role" in found[0][1]
    assert "literal-block" in found[1][1]
    assert "table" in found[2][1]
