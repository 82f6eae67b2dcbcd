"""tether: the lifecycle of asyncio applications.

Declare each component once (how it starts, how it stops, what it needs); every
entrypoint gets exactly the components it needs, started in dependency order and
concurrently where independent, supervised while they run, and stopped gracefully in
reverse order on a signal, a crash or a normal exit, with nothing left behind.
"""

from types import FunctionType as _FunctionType

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
from ._lazy import Lazy
from ._master import prefork
from ._picture import graph, status_tree
from ._plugins import Plugins
from ._runner import ExitCode, run
from ._service import (
    BlockingService,
    Service,
    ServiceBase,
    ServiceState,
    ServiceStatus,
    status,
)
from ._sockets import listeners
from ._stages import EXIT, INIT, RELOAD, START, STARTED, STOP, STOPPING, Direction, Stage
from ._supervise import Backoff, Restart, RestartIntensityError, Strategy, Supervisor
from ._tasks import cron, task, timer
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
    "prefork",
    "reload",
    "run",
    "section",
    "status",
    "status_tree",
    "subscribe",
    "task",
    "timer",
]

__version__ = "0.1.0.dev0"

# Re-exported classes and functions say they live in `tether`, as users import them.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type | _FunctionType) and _obj.__module__.startswith("tether._"):
        _obj.__module__ = "tether"
del _name, _obj
