"""The exception hierarchy: every error tether raises derives from TetherError."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DefinitionError",
    "DependencyCycleError",
    "DependencyError",
    "HookError",
    "InjectionCycleError",
    "InjectionError",
    "PluginError",
    "RegistrationError",
    "ServiceStateError",
    "StopTimeoutError",
    "TetherError",
]


class TetherError(Exception):
    """Base class of every error raised by tether itself.

    Exceptions raised by your own hooks and tasks are never wrapped: they propagate as
    they are, with a note that names the service and the stage.
    """


class DefinitionError(TetherError):
    """A service is defined in a way tether cannot use.

    Raised before anything starts. Subclasses say what part is wrong; this class itself
    covers values such as a `graceful_shutdown_timeout` that is not a positive number.
    """


class DependencyError(DefinitionError, TypeError):
    """A service's `dependencies` held something that is not a service.

    Raised before anything starts; the message names the parent service, the position
    of the offending item and what it was.
    """


class DependencyCycleError(TetherError):
    """The dependencies form a cycle; nothing was started.

    `cycle` holds the services along the cycle, the first repeated at the end, and
    the message shows it as `Api -> Cache -> Api`.
    """

    def __init__(self, message: str, cycle: tuple[object, ...]) -> None:
        super().__init__(message)
        self.cycle = cycle


class HookError(DefinitionError, TypeError):
    """A lifecycle hook is wrong: of the wrong kind, or under a name tether does not know.

    Async where it must be sync or the reverse, requiring arguments, or named as another
    library names its hooks (`on_start`) or one typo away from a tether hook
    (`strat`). Raised before anything starts; the message names the class, the method
    and the fix.
    """


class ServiceStateError(TetherError, RuntimeError):
    """A service was used in a way its current state does not allow.

    For example `wait()` on a service that is not running, entering a service that is
    already running as a root, or starting a service from inside its own stop hook.
    """


class StopTimeoutError(TetherError, TimeoutError):
    """A stop hook (or the tasks cancelled after it) outlived `graceful_shutdown_timeout`.

    The hook was cancelled and the rest of the graph still stopped.
    """


class InjectionError(TetherError, LookupError):
    """The container cannot build what was asked for.

    The message shows the chain of providers that led to the problem, e.g.
    `Api(db: Database) -> Database(config: DbConfig) -> DbConfig: no provider`;
    `chain` holds the same steps as strings. Exceptions raised by your own factories
    are never wrapped: they propagate with a note naming the chain.
    """

    def __init__(self, message: str, chain: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.chain = chain


class InjectionCycleError(InjectionError):
    """Providers inject each other in a circle; nothing was built.

    `cycle` holds the types along the cycle, the first repeated at the end, and the
    message shows it as `Api(cache: Cache) -> Cache(api: Api) -> Api`.
    """

    def __init__(self, message: str, chain: tuple[str, ...], cycle: tuple[object, ...]) -> None:
        super().__init__(message, chain)
        self.cycle = cycle


class RegistrationError(DefinitionError, TypeError):
    """A provider cannot be registered: it conflicts with another, or tether cannot use it.

    Raised by `Container.register` and `Container.add` at once, not at first use; the
    message names both registrations of a conflict and where each was made.
    """


class ConfigError(TetherError, ValueError):
    """Configuration is missing, malformed or of the wrong type.

    Every problem found while loading a section is reported at once: `problems` holds
    one line per problem, each naming the key path, where its value came from (a file,
    an environment variable, a `-c` override) and the type that was expected. Secret
    values are never shown.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class PluginError(DefinitionError):
    """A plugin cannot be loaded: not found, no `prepare`, a load cycle, or a bad yield.

    Exceptions raised inside a plugin's own `prepare` propagate unwrapped, with a note
    naming the plugin.
    """
