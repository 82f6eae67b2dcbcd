"""The public API is exactly what is meant: pinned here, typed, and said to live in `tether`."""

from __future__ import annotations

import tether

EXPECTED = {
    "EXIT",
    "INIT",
    "RELOAD",
    "START",
    "STARTED",
    "STOP",
    "STOPPING",
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
    "LifecycleEvent",
    "PluginError",
    "Plugins",
    "RegistrationError",
    "Secret",
    "Service",
    "ServiceBase",
    "ServiceState",
    "ServiceStateError",
    "ServiceStatus",
    "Stage",
    "StopTimeoutError",
    "TetherError",
    "check",
    "cron",
    "graph",
    "reload",
    "run",
    "section",
    "status",
    "status_tree",
    "subscribe",
    "task",
    "timer",
}


def test_all_is_exactly_the_public_api() -> None:
    """Nothing is exported by accident and nothing public is missing from __all__."""
    assert set(tether.__all__) == EXPECTED
    public = {name for name in dir(tether) if not name.startswith("_")}
    assert public == EXPECTED


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
