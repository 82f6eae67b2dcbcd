"""The package's folders are its architecture: layers whose imports point down only.

Every module under `src/tether` belongs to a layer, by its path (lowest first):

1. `tether._core`: services and records, graph, scheduling, stages, events, tasks
2. `tether._inject`: providers, container, config and conversion, plugins
3. `tether._supervision`: supervisors, service threads, lazy services
4. `tether._process`: runner, signals, notify, logging, deadline, REPL, pictures
5. `tether._prefork`: master, workers, sockets
6. `tether` (the public API) and `tether.health`
7. `tether.ext` and `tether.testing`
8. the command: `tether._cli`, `tether._reloader` (`run --reload`), `tether.__main__`

A module imports only from its own layer or lower ones: at module level, inside a
function, and under `TYPE_CHECKING` alike. Within a layer, modules may name each
other's types under `TYPE_CHECKING`, but their runtime imports form no cycle. The
imports are read from the source with `ast`, so nothing here imports tether.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (name, packages: the modules in and under them, modules: exactly these)
    ("core", ("tether._core",), ()),
    ("injection", ("tether._inject",), ()),
    ("supervision", ("tether._supervision",), ()),
    ("process", ("tether._process",), ()),
    ("pre-fork", ("tether._prefork",), ()),
    ("public API", (), ("tether", "tether.health")),
    ("integrations and testing", ("tether.ext", "tether.testing"), ()),
    ("command", (), ("tether._cli", "tether._reloader", "tether.__main__")),
)

LONG = 600
"""Lines past which a module says, in its docstring, why it is one module."""
LONG_REASON = "Longer than 600 lines"


@dataclass(frozen=True)
class Import:
    """One import of a tether module by another, as written."""

    module: str
    where: str
    """`file:line` of the import statement."""
    target: str
    statement: str
    type_only: bool


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules(src: Path = SRC) -> dict[str, Path]:
    return {
        module_name(path, src): path
        for path in sorted((src / "tether").rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def layer_of(module: str) -> int | None:
    """The index of `module`'s layer in LAYERS, or None if it has none."""
    for index, (_, packages, modules) in enumerate(LAYERS):
        if module in modules:
            return index
        if any(module == p or module.startswith(p + ".") for p in packages):
            return index
    return None


def _is_type_checking(test: ast.expr) -> bool | None:
    """True for `if TYPE_CHECKING:`, False for `if not TYPE_CHECKING:`, else None."""
    negated = False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        negated, test = True, test.operand
    name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
    if name in ("TYPE_CHECKING", "_TYPE_CHECKING"):
        return not negated
    return None


def imports_of(
    module: str, file: str, source: str, modules: dict[str, Path] | set[str]
) -> list[Import]:
    """Every import of a tether module in `source` (of `file`), wherever it is written."""
    is_package = file.endswith("__init__.py")
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        return [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names
        ]

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If):
            checking = _is_type_checking(node.test)
            if checking is not None:
                for statement in node.body:
                    visit(statement, type_only or checking)
                for statement in node.orelse:
                    visit(statement, type_only or not checking)
                return
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in dict.fromkeys(targets(node)):
                if target in modules and target != module:
                    where = f"{file}:{node.lineno}"
                    found.append(Import(module, where, target, ast.unparse(node), type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(source), type_only=False)
    return found


def read_imports(src: Path = SRC) -> list[Import]:
    modules = all_modules(src)
    found: list[Import] = []
    for module, path in modules.items():
        file = str(path.relative_to(src.parent))
        found.extend(imports_of(module, file, path.read_text(), modules))
    return found


def upward(imports: list[Import]) -> list[str]:
    """A line per import of a higher layer."""
    lines = []
    for imp in imports:
        low, high = layer_of(imp.module), layer_of(imp.target)
        if low is None or high is None or high <= low:
            continue
        kind = " (under TYPE_CHECKING)" if imp.type_only else ""
        lines.append(
            f"{imp.where}: {imp.module} (layer {low + 1}, {LAYERS[low][0]}) imports "
            f"{imp.target} (layer {high + 1}, {LAYERS[high][0]}){kind}: `{imp.statement}`"
        )
    return lines


def cycles(imports: list[Import]) -> list[str]:
    """A line per runtime import cycle, naming each import along it."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if not imp.type_only:
            edges.setdefault(imp.module, {}).setdefault(imp.target, imp)
    reported: list[str] = []
    seen: set[frozenset[str]] = set()
    for start in sorted(edges):
        ring = _shortest_ring(edges, start)
        if ring is None or frozenset(ring) in seen:
            continue
        seen.add(frozenset(ring))
        steps = [
            f"{a} imports {b} at {edges[a][b].where} (`{edges[a][b].statement}`)"
            for a, b in zip(ring, [*ring[1:], ring[0]], strict=True)
        ]
        reported.append("cycle: " + "; ".join(steps))
    return reported


def _shortest_ring(edges: dict[str, dict[str, Import]], start: str) -> list[str] | None:
    """The modules of the shortest way from `start` back to itself, `start` first."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for following in sorted(edges.get(current, {})):
            if following == start:
                ring = [current]
                while ring[-1] != start:
                    ring.append(parents[ring[-1]])
                return ring[::-1]
            if following not in parents:
                parents[following] = current
                queue.append(following)
    return None


# ------------------------------------------------------------------------ the rules


def test_every_module_belongs_to_a_layer() -> None:
    """A new module goes into a layer's folder; none sits beside them unplaced."""
    unplaced = [name for name in all_modules() if layer_of(name) is None]
    assert not unplaced, f"modules in no layer (move each into one): {unplaced}"


def test_no_module_imports_a_higher_layer() -> None:
    """Imports point down: at module level, inside functions and under TYPE_CHECKING."""
    found = upward(read_imports())
    assert not found, (
        "imports of a higher layer (a lower layer tells a higher one something through "
        "an event or an interface the higher one registers):\n" + "\n".join(found)
    )


def test_runtime_imports_form_no_cycle() -> None:
    """No two modules import each other at runtime, directly or around a circle."""
    found = cycles(read_imports())
    assert not found, "runtime import cycles:\n" + "\n".join(found)


def test_long_modules_say_why() -> None:
    """A module past 600 lines is usually two responsibilities; one that is not says why."""
    silent = []
    for name, path in all_modules().items():
        text = path.read_text()
        if text.count("\n") <= LONG:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if LONG_REASON not in docstring:
            silent.append(f"{name} ({text.count(chr(10))} lines)")
    assert not silent, (
        f"split these, or say why they are one module in a docstring sentence "
        f"'{LONG_REASON} because ...': {silent}"
    )


def test_import_tether_loads_the_core_only() -> None:
    """`import tether` loads the core; the other layers load when a name of theirs is used."""
    code = "import sys, tether; print(sorted(m for m in sys.modules if m.startswith('tether')))"
    done = subprocess.run(  # noqa: S603 - the running interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = ast.literal_eval(done.stdout.strip())
    assert loaded
    assert [m for m in loaded if layer_of(m) not in (0, layer_of("tether"))] == []
    assert [m for m in loaded if layer_of(m) == layer_of("tether")] == ["tether"]


def test_the_architecture_page_names_every_module_and_only_real_ones() -> None:
    """docs/architecture.md lists each layer's modules, and the paths it names exist."""
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    for path in re.findall(r"`(_(?:core|inject|supervision|process|prefork)/_\w+)(?:\.py)?`", page):
        assert (SRC / "tether" / f"{path}.py").exists(), f"the page names {path}, which is gone"
    folders = ("_core", "_inject", "_supervision", "_process", "_prefork")
    missing = [
        name
        for name in all_modules()
        if name.count(".") == 2
        and name.split(".")[1] in folders
        and f"`{name.rsplit('.', 1)[1]}`" not in page
    ]
    assert not missing, f"docs/architecture.md does not name {missing}"


# --------------------------------------------------------------- the check itself


@pytest.mark.parametrize(
    "source",
    [
        "from .._supervision import _supervisor\n",
        "def later():\n    from tether._supervision._supervisor import Supervisor\n",
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from .._supervision._supervisor import Supervisor\n"
        ),
    ],
    ids=["module level", "inside a function", "under TYPE_CHECKING"],
)
def test_an_upward_import_is_named_wherever_it_is_written(source: str) -> None:
    """The check sees an import of a higher layer and says where it is and what it is."""
    file = "src/tether/_core/_engine.py"
    modules = {"tether._core._engine", "tether._supervision._supervisor"}
    found = upward(imports_of("tether._core._engine", file, source, modules))
    assert len(found) == 1
    assert found[0].startswith("src/tether/_core/_engine.py:")
    assert (
        "tether._core._engine (layer 1, core) imports tether._supervision._supervisor" in (found[0])
    )


def test_a_cycle_is_named_with_its_imports(tmp_path: Path) -> None:
    """Two modules importing each other at runtime are reported with both imports."""
    core = tmp_path / "tether" / "_core"
    core.mkdir(parents=True)
    (tmp_path / "tether" / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "_a.py").write_text("from ._b import b\n")
    (core / "_b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._c import c\n"
        "def b():\n    from ._a import a\n"
    )
    (core / "_c.py").write_text("from ._b import b\n")
    found = cycles(read_imports(tmp_path))
    assert len(found) == 1
    assert "tether._core._a imports tether._core._b" in found[0]
    assert "tether._core._b imports tether._core._a" in found[0]
    assert "tether._core._c " not in found[0]  # a type-only import closes no runtime cycle
