"""tether: the lifecycle of asyncio applications.

Declare each component once (how it starts, how it stops, what it needs); every
entrypoint gets exactly the components it needs, started in dependency order and
concurrently where independent, supervised while they run, and stopped gracefully in
reverse order on a signal, a crash or a normal exit, with nothing left behind.
"""

from types import FunctionType as _FunctionType
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any
from typing import NoReturn as _NoReturn

from ._core._base import ServiceBase
from ._core._base import set_launcher as _set_launcher
from ._core._engine import reload
from ._core._errors import (
    ConfigError,
    DefinitionError,
    DependencyCycleError,
    DependencyError,
    HookError,
    InjectionCycleError,
    InjectionError,
    PluginError,
    RegistrationError,
    ServiceStateError,
    StopTimeoutError,
    TetherError,
)
from ._core._events import EventKind, LifecycleEvent, subscribe
from ._core._graph import check
from ._core._hooknames import not_a_hook
from ._core._records import ServiceState
from ._core._service import BlockingService, Service, ServiceStatus, status
from ._core._stages import EXIT, INIT, RELOAD, START, STARTED, STOP, STOPPING, Direction, Stage
from ._core._tasks import cron, task, timer
from ._core._version import __version__ as __version__

# Loaded on first use (PEP 562): `import tether` pays only for the core. Each name maps
# to its module; the type checker sees ordinary imports.
_LAZY = {
    "Backoff": "_supervision._policy",
    "Config": "_inject._config",
    "Container": "_inject._container",
    "ExitCode": "_process._runner",
    "Lazy": "_supervision._lazy",
    "MaxChildrenError": "_supervision._policy",
    "Plugins": "_inject._plugins",
    "Restart": "_supervision._policy",
    "RestartIntensityError": "_supervision._policy",
    "Secret": "_inject._convert",
    "ServiceThread": "_supervision._thread",
    "Strategy": "_supervision._policy",
    "Supervisor": "_supervision._supervisor",
    "ThreadStalledError": "_supervision._thread",
    "graph": "_process._picture",
    "listeners": "_prefork._sockets",
    "prefork": "_prefork._master",
    "run": "_process._runner",
    "section": "_inject._config",
    "status_tree": "_process._picture",
    "stop_serving": "_prefork._sockets",
}

if _TYPE_CHECKING:
    from ._inject._config import Config, section
    from ._inject._container import Container
    from ._inject._convert import Secret
    from ._inject._plugins import Plugins
    from ._prefork._master import prefork
    from ._prefork._sockets import listeners, stop_serving
    from ._process._picture import graph, status_tree
    from ._process._runner import ExitCode, run
    from ._supervision._lazy import Lazy
    from ._supervision._policy import (
        Backoff,
        MaxChildrenError,
        Restart,
        RestartIntensityError,
        Strategy,
    )
    from ._supervision._supervisor import Supervisor
    from ._supervision._thread import ServiceThread, ThreadStalledError

__all__ = [
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
    "StopTimeoutError",
    "Strategy",
    "Supervisor",
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
]


def _as_public(obj: object) -> None:
    """Re-exported classes and functions say they live in `tether`, as users import them."""
    if isinstance(obj, type | _FunctionType) and obj.__module__.startswith("tether._"):
        obj.__module__ = "tether"


def _launch(service: ServiceBase, **options: _Any) -> _NoReturn:
    """`Service.launch`: the runner, loaded when a service first runs as the process."""
    from ._process._runner import run as run_process  # noqa: PLC0415 - the runner loads only when used

    run_process(service, **options)


_set_launcher(_launch)

for _name in __all__:
    if _name not in _LAZY:
        _as_public(globals()[_name])
del _name

if not _TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'tether' has no attribute {name!r}")
        from importlib import import_module  # noqa: PLC0415 - only when a lazy name is used

        value = getattr(import_module(f"tether.{module}"), name)
        _as_public(value)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))
