"""The `tether` command: finding `module:attr`, and `graph` / `check` without starting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import tether
from tether._cli import main
from tether._process._target import TargetError, resolve

ROOT = Path(__file__).parents[1]

APP = """
import tether

class Db(tether.Service):
    pass

class Api(tether.Service):
    def __init__(self, db=None):
        self.db = db or Db()

    @property
    def dependencies(self):
        return [self.db]

class NeedsArgs(tether.Service):
    def __init__(self, url):
        self.url = url

class NotAService:
    pass

api = Api()
number = 42

def make():
    return Api()

def make_number():
    return 7

async def make_async():
    return Api()

class Loop(tether.Service):
    other = None

    @property
    def dependencies(self):
        return [self.other]

a, b = Loop(), Loop()
a.other, b.other = b, a

class Factories:
    @staticmethod
    def create():
        return Api()
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path, named uniquely so each test imports it afresh."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("attr", ["api", "Api", "make", "Factories.create"])
def test_target_may_be_an_instance_a_class_or_a_factory(app: str, attr: str) -> None:
    """`module:attr` names an instance, a class (called) or a factory (called)."""
    service, _ = resolve(f"{app}:{attr}")
    assert type(service).__name__ == "Api"


def test_missing_colon_shows_the_form(app: str) -> None:
    """A target without `:attr` says what the form is, with an example."""
    with pytest.raises(TargetError, match=r"is not of the form module:attr \(e\.g\. myapp"):
        resolve(app)


def test_a_file_name_is_corrected_to_a_module_name() -> None:
    """`app.py:api` hints at `app:api`: tether imports modules, not files."""
    with pytest.raises(TargetError, match=r"Name the module, not the file: pkg\.app:\.\.\."):
        resolve("pkg/app.py:api")


def test_unknown_module_is_named_with_where_it_was_looked_for() -> None:
    """A module that does not exist is named, with the interpreter and directory."""
    expected = r"No module named 'no_such_mod' \(from 'no_such_mod:x'\)"
    with pytest.raises(TargetError, match=expected):
        resolve("no_such_mod:x")


def test_import_error_inside_the_module_is_not_mistaken_for_a_missing_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module exists but imports something missing: that error propagates as is."""
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import not_installed_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        resolve(f"{name}:app")


def test_unknown_attribute_suggests_close_names_and_lists_services(app: str) -> None:
    """A misspelt attribute gets 'did you mean' and the services the module has."""
    with pytest.raises(TargetError) as caught:
        resolve(f"{app}:apii")
    message = str(caught.value)
    assert f"has no attribute 'apii' (from '{app}:apii')" in message
    assert "Did you mean 'api'" in message
    assert "Services there: Api, Db, Loop, NeedsArgs, a, api, b." in message


def test_something_that_is_not_a_service_is_refused(app: str) -> None:
    """A plain value is refused with what it is and what tether accepts."""
    with pytest.raises(TargetError, match=r":number is 42 \(int\), not a service"):
        resolve(f"{app}:number")


def test_a_class_that_is_not_a_service_is_refused(app: str) -> None:
    """A class that does not derive from Service says to subclass it."""
    with pytest.raises(TargetError, match=r"NotAService, which is not a tether service"):
        resolve(f"{app}:NotAService")


def test_a_service_class_whose_arguments_cannot_be_injected_is_refused(app: str) -> None:
    """A constructor parameter the container cannot fill is named, with the fix."""
    with pytest.raises(tether.TetherError, match=r"NeedsArgs\(url\) has no type annotation"):
        resolve(f"{app}:NeedsArgs")


def test_a_factory_returning_something_else_is_refused(app: str) -> None:
    """A factory's result must be a service."""
    with pytest.raises(TargetError, match=r"make_number was called as a factory and did not"):
        resolve(f"{app}:make_number")


def test_an_async_factory_is_refused_with_the_reason(app: str) -> None:
    """Factories run before the loop exists, so async ones are refused."""
    with pytest.raises(TargetError, match=r"is an async function; a factory must be a plain"):
        resolve(f"{app}:make_async")


def test_graph_command_prints_the_picture(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tether graph mod:attr --format mermaid` prints the graph, exit code 0."""
    assert main(["graph", f"{app}:api", "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD\n")
    assert "s0 -->|1| s1" in out


def test_check_command_accepts_a_valid_graph(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tether check` on a valid graph says so and exits 0, starting nothing."""
    assert main(["check", f"{app}:api"]) == 0
    assert "the graph is valid; nothing was started" in capsys.readouterr().out
    module = sys.modules[app]
    assert not module.api.running
    assert tether.status(module.api).state is tether.ServiceState.CREATED


def test_check_command_names_the_cycle_and_exits_3(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tether check` on a cyclic graph prints the cycle and exits with code 3."""
    with pytest.raises(SystemExit) as caught:
        main(["check", f"{app}:a"])
    assert caught.value.code == 3
    assert "Dependency cycle: Loop -> Loop -> Loop" in capsys.readouterr().err


def test_bad_target_exits_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    """A target that cannot be found is a usage error: code 2, message on stderr."""
    with pytest.raises(SystemExit) as caught:
        main(["run", "no_such_mod:app"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith("tether: No module named 'no_such_mod'")


def test_failing_factory_exits_3_with_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A factory that raises is a startup failure: traceback and code 3."""
    name = f"failing_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def app():\n    raise OSError('no config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as caught:
        main(["check", f"{name}:app"])
    assert caught.value.code == 3
    err = capsys.readouterr().err
    assert "OSError: no config" in err
    assert f"loading {name}:app failed" in err


@pytest.mark.parametrize("command", ["run", "graph", "check", "repl"])
def test_every_sub_command_has_help(command: str) -> None:
    """`python -m tether COMMAND --help` prints the usage and exits 0."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tether", command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"usage: tether {command}" in result.stdout
    assert "module:attr" in result.stdout


@pytest.mark.parametrize("command", ["run", "graph", "check", "repl"])
def test_every_option_has_help(command: str) -> None:
    """No option of a sub-command is left without a line of help."""
    from tether._cli import _parser

    parser = _parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    sub = commands.choices[command]  # type: ignore[index]
    missing = [a.option_strings or a.dest for a in sub._actions if not a.help]
    assert missing == []


def test_console_script_is_installed() -> None:
    """The `tether` console script sits next to the interpreter and runs `main`."""
    script = Path(sys.executable).parent / "tether"
    result = subprocess.run(  # noqa: S603 - the console script of this environment
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"tether {tether.__version__}"


def test_shutdown_timeout_with_workers_is_refused_naming_the_right_option(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pre-fork workers stop by --graceful-timeout; --shutdown-timeout would be ignored."""
    with pytest.raises(SystemExit) as caught:
        main(["run", f"{app}:Api", "--workers", "2", "--shutdown-timeout", "5"])
    assert caught.value.code == 2
    assert "--graceful-timeout" in capsys.readouterr().err
