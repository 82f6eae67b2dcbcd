"""The public API is exactly what is meant: pinned here, typed, and said to live in `tether`."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import tether
import tether.testing

EXPECTED = {
    "EXIT",
    "INIT",
    "RELOAD",
    "START",
    "STARTED",
    "STOP",
    "STOPPING",
    "Backoff",
    "BlockingService",
    "Config",
    "ConfigError",
    "Container",
    "DefinitionError",
    "DependencyCycleError",
    "DependencyError",
    "Direction",
    "EventKind",
    "ExitCode",
    "HookError",
    "InjectionCycleError",
    "InjectionError",
    "Lazy",
    "LifecycleEvent",
    "MaxChildrenError",
    "PluginError",
    "Plugins",
    "RegistrationError",
    "Restart",
    "RestartIntensityError",
    "Secret",
    "Service",
    "ServiceBase",
    "ServiceState",
    "ServiceStateError",
    "ServiceStatus",
    "ServiceThread",
    "Stage",
    "Strategy",
    "Supervisor",
    "StopTimeoutError",
    "TetherError",
    "ThreadStalledError",
    "check",
    "cron",
    "graph",
    "listeners",
    "not_a_hook",
    "prefork",
    "reload",
    "run",
    "section",
    "status",
    "status_tree",
    "stop_serving",
    "subscribe",
    "task",
    "timer",
}

# Public modules that `import tether` does not import; they show in dir(tether) once
# something imported them. Each pins its own __all__ (tether.testing is pinned below,
# beside the hooks pytest finds in it).
SUBMODULES = {
    "ext": set(),
    "health": {"DRAIN", "Health", "MetricsSource"},
    "ext.aiohttp": {"Server", "aget", "get"},
    "ext.asgi": {"LifespanError", "Server", "aget", "get"},
    "ext.wsgi": {"Server", "get"},
    "ext.tornado": {"Server", "get"},
    "ext.twisted": {"Listener", "Reactor"},
    "ext.otel": {"LifecycleTracer"},
    "ext.prometheus": {"Metrics"},
}
PUBLIC_MODULES = {"testing", *(name for name in SUBMODULES if "." not in name)}
"""Public submodules: an attribute of the package once imported."""

EXPECTED_TESTING = {"Starter", "VirtualClock", "VirtualClockLoop"}

TESTING_HOOKS = {"pytest_addoption", "pytest_configure"}
"""What pytest finds in tether.testing when it loads the plugin (the pytest11 entry point)."""


def _public(module: types.ModuleType) -> set[str]:
    # Identifiers only: pytest's assertion rewriting adds names such as "@py_builtins" to
    # the modules of a distribution that registers a pytest plugin.
    names = {name for name in dir(module) if name.isidentifier() and not name.startswith("_")}
    return {name for name in names if not isinstance(getattr(module, name), types.ModuleType)}


def test_all_is_exactly_the_public_api() -> None:
    """Nothing is exported by accident and nothing public is missing from __all__."""
    assert set(tether.__all__) == EXPECTED
    assert _public(tether) == EXPECTED
    modules = {
        name
        for name in dir(tether)
        if name.isidentifier()
        and not name.startswith("_")
        and isinstance(getattr(tether, name), types.ModuleType)
    }
    assert modules <= PUBLIC_MODULES


@pytest.mark.parametrize("name", sorted(SUBMODULES))
def test_public_modules_export_exactly_their_api(name: str) -> None:
    """Each public module's __all__ is pinned, documented, and names what it defines."""
    framework = {
        "ext.aiohttp": "aiohttp",
        "ext.asgi": "uvicorn",
        "ext.wsgi": "a2wsgi",
        "ext.tornado": "tornado",
        "ext.twisted": "twisted",
        "ext.otel": "opentelemetry.trace",
        "ext.prometheus": "prometheus_client",
    }.get(name)
    if framework is not None:
        pytest.importorskip(framework)
    module = importlib.import_module(f"tether.{name}")
    assert module.__doc__
    exported = set(getattr(module, "__all__", ()))
    assert exported == SUBMODULES[name]
    for attribute in exported:
        obj = getattr(module, attribute)
        assert obj.__doc__, f"tether.{name}.{attribute}"


def test_import_tether_imports_no_integration() -> None:
    """`import tether` loads neither the integrations nor their frameworks."""
    code = (
        "import sys, tether; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'uvicorn', 'starlette', 'a2wsgi', 'flask', 'django', 'tornado', 'twisted', "
        "'rloop') or m.startswith(('tether.ext', 'tether.health'))))"
    )
    out = subprocess.run(  # noqa: S603 - the running interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_optional_parts_load_on_first_use() -> None:
    """`import tether` loads the core only; injection, the runner, supervision, threads,
    pre-fork and pictures load when one of their names is first used, and then work as
    imported."""
    optional = (
        "tether._inject._container",
        "tether._inject._config",
        "tether._inject._convert",
        "tether._inject._plugins",
        "tether._process._runner",
        "tether._supervision._supervisor",
        "tether._supervision._thread",
        "tether._supervision._lazy",
        "tether._prefork._master",
        "tether._prefork._sockets",
        "tether._process._picture",
    )
    code = (
        "import sys, tether\n"
        f"print(sorted(m for m in sys.modules if m in {optional!r}))\n"
        "from tether import Supervisor, run\n"
        "print(Supervisor.__module__, run.__module__,"
        " 'tether._supervision._supervisor' in sys.modules)\n"
        "print('prefork' in dir(tether), tether.prefork is tether.prefork)\n"
        "try:\n"
        "    tether.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(  # noqa: S603 - the running interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "[]",
        "tether tether True",
        "True True",
        "module 'tether' has no attribute 'no_such_name'",
    ]


def test_reexported_names_live_in_tether() -> None:
    """Classes and functions say `tether.X` in reprs and docs, not a private module."""
    for name in tether.__all__:
        obj = getattr(tether, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__module__")):
            assert obj.__module__ == "tether", name


def test_public_names_are_documented() -> None:
    """Every public class and function has a docstring."""
    for name in tether.__all__:
        obj = getattr(tether, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__doc__, name


def test_package_is_typed() -> None:
    """py.typed ships with the package."""
    from importlib.resources import files

    assert files("tether").joinpath("py.typed").is_file()


def test_testing_all_is_exactly_its_public_api() -> None:
    """tether.testing exports its Python API and, beside it, only the hooks pytest calls."""
    assert set(tether.testing.__all__) == EXPECTED_TESTING
    assert _public(tether.testing) == EXPECTED_TESTING | TESTING_HOOKS


def test_testing_names_live_in_tether_testing_and_are_documented() -> None:
    """The testing classes say `tether.testing.X` and have docstrings."""
    for name in tether.testing.__all__:
        obj = getattr(tether.testing, name)
        assert obj.__module__ == "tether.testing", name
        assert obj.__doc__, name


def test_testing_is_registered_as_a_pytest_plugin() -> None:
    """The pytest11 entry point `tether` names tether.testing, so pytest loads it."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("tether") == "tether.testing"


def test_testing_imports_without_pytest() -> None:
    """The virtual clock is usable outside pytest: importing tether.testing needs no pytest."""
    probe = "import sys, tether.testing; print('pytest' in sys.modules)"
    done = subprocess.run(  # noqa: S603  (the running interpreter, a fixed probe)
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "False"
