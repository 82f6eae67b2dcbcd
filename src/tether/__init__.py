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

from ._config import Config, section
from ._container import Container
from ._convert import Secret
from ._engine import reload
from ._errors import (
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
from ._events import EventKind, LifecycleEvent, subscribe
from ._graph import check
from ._hooknames import not_a_hook
from ._service import (
    BlockingService,
    Service,
    ServiceBase,
    ServiceState,
    ServiceStatus,
    status,
)
from ._service import set_launcher as _set_launcher
from ._stages import EXIT, INIT, RELOAD, START, STARTED, STOP, STOPPING, Direction, Stage
from ._tasks import cron, task, timer

# Loaded on first use (PEP 562): `import tether` pays only for the core. Each name maps
# to its module; the type checker sees ordinary imports.
_LAZY = {
    "Backoff": "_supervise",
    "ExitCode": "_runner",
    "Lazy": "_lazy",
    "Plugins": "_plugins",
    "Restart": "_supervise",
    "RestartIntensityError": "_supervise",
    "ServiceThread": "_thread",
    "Strategy": "_supervise",
    "Supervisor": "_supervise",
    "ThreadStalledError": "_thread",
    "graph": "_picture",
    "listeners": "_sockets",
    "prefork": "_master",
    "run": "_runner",
    "status_tree": "_picture",
    "stop_serving": "_sockets",
}

if _TYPE_CHECKING:
    from ._lazy import Lazy
    from ._master import prefork
    from ._picture import graph, status_tree
    from ._plugins import Plugins
    from ._runner import ExitCode, run
    from ._sockets import listeners, stop_serving
    from ._supervise import Backoff, Restart, RestartIntensityError, Strategy, Supervisor
    from ._thread import ServiceThread, ThreadStalledError

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

__version__ = "0.1.0.dev0"


def _as_public(obj: object) -> None:
    """Re-exported classes and functions say they live in `tether`, as users import them."""
    if isinstance(obj, type | _FunctionType) and obj.__module__.startswith("tether._"):
        obj.__module__ = "tether"


def _launch(service: ServiceBase, **options: _Any) -> _NoReturn:
    """`Service.launch`: the runner, loaded when a service first runs as the process."""
    from ._runner import run as run_process  # noqa: PLC0415 - the runner loads only when used

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
