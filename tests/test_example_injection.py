"""The injection example runs: the API wired by types, the script reusing its pool."""

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import bounded

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "injection"


@pytest.fixture
def app() -> Iterator[ModuleType]:
    """examples/injection/app.py, imported as a real module."""
    spec = importlib.util.spec_from_file_location("notes_app", EXAMPLE / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["notes_app"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["notes_app"]


def run_script(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "APP_DB_PATH": str(database)}
    return subprocess.run(  # noqa: S603  (our own example, with fixed arguments)
        [sys.executable, str(EXAMPLE / "script.py"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_script_starts_only_the_pool(tmp_path: Path) -> None:
    """script.py adds a note with the app's DbPool; the client and the API never start."""
    database = tmp_path / "notes.db"
    added = run_script("add", "buy milk", database=database)
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines() == [
        "db: 2 connections to notes.db",
        "added: buy milk",
        "db: closed",
    ]
    listed = run_script("list", database=database)
    assert "- buy milk" in listed.stdout.splitlines()


async def test_the_api_serves_with_config_from_toml_and_environment(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Api gets its pool and client by type; the file sets most values, APP_* the rest."""
    database = tmp_path / "notes.db"
    assert run_script("add", "first note", database=database).returncode == 0
    container = app.build_container(
        environ={"APP_DB_PATH": str(database), "APP_API_PORT": "0", "APP_HTTP_TIMEOUT": "2s"}
    )
    async with container, container.started(app.Api) as api:
        assert container.get(app.HttpConfig).timeout == dt.timedelta(seconds=2)
        assert container.get(app.DbConfig).pool_size == 2  # from app.toml
        client = container.get(app.HttpClient)
        assert api.client is client
        status, body = await bounded(client.get(f"http://127.0.0.1:{api.port}/notes"))
        assert (status, json.loads(body)) == (200, ["first note"])
        api.config.upstream = f"http://127.0.0.1:{api.port}/notes"
        status, body = await bounded(client.get(f"http://127.0.0.1:{api.port}/upstream"))
        assert json.loads(body) == {"status": 200, "body": '["first note"]'}
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] in ("db: closed", "http: client closed")
    assert lines.index("api: stopped") == 3
    assert lines[2].startswith("api: listening on http://127.0.0.1:")


def test_the_readme_injection_example_runs() -> None:
    """The README's injection snippet runs as written and prints what it says."""
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    after = readme.split("<!-- injection-example -->\n```python\n", 1)[1]
    code = after.split("```", 1)[0]
    done = subprocess.run(  # noqa: S603  (the running interpreter, our README's code)
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.splitlines() == [
        "database up (4 connections)",
        "maintenance on sqlite:///app.db",
        "database down",
        "database up (4 connections)",
        "api up",
        "serving",
        "api down",
        "database down",
    ]
