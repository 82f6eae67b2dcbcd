"""Hook names tether does not know: other libraries' habits and near-misses of its own.

tether finds hooks by name. A method named as mode, systemPY or aiomisc name theirs
(`on_start`, `on_init_dependencies`, `on_startup`), or one typo away from a tether
hook (`strat`, `on_stoping`, `dependancies`), would simply never be called and its
service would run without it. `problems` finds such methods so that the class is
refused before anything starts; `not_a_hook` marks a method that really means
something else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["not_a_hook", "problems"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__tether_not_a_hook__"

# What other libraries call their hooks, and the tether hook each one should be.
FOREIGN: Mapping[str, tuple[str, str]] = {
    # mode
    "on_start": ("start", "mode"),
    "on_first_start": ("start", "mode"),
    "on_restart": ("start", "mode"),
    "on_stop": ("stop", "mode"),
    "on_shutdown": ("stop", "mode and systemPY"),
    "on_init_dependencies": ("dependencies", "mode"),
    "on_thread_stop": ("stop", "mode"),
    # systemPY
    "pre_startup": ("start", "systemPY"),
    "on_startup": ("start", "systemPY"),
    "post_startup": ("on_started", "systemPY"),
    "pre_shutdown": ("on_stopping", "systemPY"),
    "post_shutdown": ("stop", "systemPY"),
    # aiomisc (entrypoint signals)
    "pre_start": ("start", "aiomisc"),
    "post_stop": ("stop", "aiomisc"),
}

# Names tether reads from a service class: the hooks of the built-in stages and the
# properties of the contract. Typos of these are looked for.
HOOKS = (
    "start",
    "stop",
    "dependencies",
    "graceful_shutdown_timeout",
    "on_init",
    "on_started",
    "on_reload",
    "on_stopping",
    "on_exit",
)

# The rest of the contract: never a typo, whatever they look like.
_CONTRACT = frozenset(
    {*HOOKS, "running", "add_task", "run", "wait", "request_stop", "sleep", "launch", "restart"}
)


def not_a_hook(method: F) -> F:
    """Mark `method` as meaning something else than the tether hook its name suggests.

    tether refuses a service class with a method named as another library's hook
    (`on_start`, `on_shutdown`, `on_init_dependencies`...) or one typo away from a
    tether hook (`strat`, `dependancies`), since it would never be called. When the
    name is right for what the method does, say so; tether then leaves it alone:

        class Button(tether.Service):
            @tether.not_a_hook
            def on_start(self) -> None:  # called by the UI toolkit, not by tether
                ...

    Put it right above the `def`, below any `@property`, `@staticmethod` or
    `@functools.cached_property`. Returns `method` itself.
    """
    if not inspect.isfunction(method):
        raise TypeError(
            f"not_a_hook marks a method, got {method!r} ({type(method).__name__}); put "
            f"it right above the def, below any @property or @staticmethod."
        )
    setattr(method, _MARK, True)
    return method


def _function_of(value: object) -> Callable[..., Any] | None:
    """The function behind a method-like class attribute, or None for anything else."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    elif isinstance(value, functools.cached_property):
        value = value.func
    return value if inspect.isfunction(value) else None


def problems(cls: type, hooks: Mapping[Any, str], owner: str, service: type) -> list[str]:
    """What is wrong with the method names and hook signatures of `cls`, one line each.

    `hooks` maps each stage `cls` has a hook for to the method's name; `owner` is
    how errors name `cls`. The names looked at are those of the service classes in
    its MRO (subclasses of `service`, tether's ServiceBase), outside tether: a mixin
    of another library keeps its own names, and tether's classes use tether's.
    """
    found: list[str] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not issubclass(klass, service) or klass.__module__.partition(".")[0] == "tether":
            continue
        label = klass.__qualname__.rsplit("<locals>.", 1)[-1]
        for name, value in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            line = _misnamed(label, name, value)
            if line is not None:
                found.append(line)
    for name in dict.fromkeys(hooks.values()):
        line = _required_parameters(cls, owner, name)
        if line is not None:
            found.append(line)
    return found


def _misnamed(label: str, name: str, value: object) -> str | None:
    if name.startswith("_") or name in _CONTRACT:
        return None
    function = _function_of(value)
    if function is None or getattr(function, _MARK, False):
        return None
    if getattr(function, "__tether_stage__", None) is not None:
        return None  # bound to a stage by decorator: its name does not matter
    if getattr(function, "__tether_task__", None) is not None:
        return None  # @task, @timer, @cron
    where = f"{label}.{name}"
    opt_out = f"If {name} means something else, mark it @tether.not_a_hook (right above its def)."
    foreign = FOREIGN.get(name)
    if foreign is not None:
        hook, library = foreign
        return (
            f"{where} is {library}'s name for a hook; tether never calls it. Name it "
            f"`{hook}` ({_what(hook)}). {opt_out}"
        )
    meant = _near_miss(name)
    if meant is not None:
        return (
            f"{where} looks like a misspelling of `{meant}` ({_what(meant)}); tether never "
            f"calls {name}. Rename it `{meant}`. {opt_out}"
        )
    return None


def _what(hook: str) -> str:
    return {
        "start": "async def start(self), called to bring the service up",
        "stop": "async def stop(self), called to take it down",
        "dependencies": "a property returning the services to start first",
        "graceful_shutdown_timeout": "a property: seconds the stop hook may take",
        "on_init": "def on_init(self), run before the event loop exists",
        "on_started": "called once every service has started",
        "on_reload": "called on SIGHUP or tether.reload()",
        "on_stopping": "called before any service stops",
        "on_exit": "def on_exit(self), run after the event loop closed",
    }[hook]


def _near_miss(name: str) -> str | None:
    """The tether hook `name` is a typo of, if it is one.

    Short hooks (`start`, `stop`) only match a swap of two neighbouring letters, so
    that `step` or `stat` stay ordinary names; longer ones match one edit, and the
    longest (ten letters or more) two.
    """
    lowered = name.lower()
    best: tuple[int, str] | None = None
    for hook in HOOKS:
        if len(hook) <= 5:
            distance = 0 if lowered == hook else 1 if _swapped(lowered, hook) else 9
            allowed = 1
        else:
            allowed = 1 if len(hook) < 10 else 2
            if abs(len(lowered) - len(hook)) > allowed:
                continue
            distance = _distance(lowered, hook)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, hook)
    return None if best is None else best[1]


def _swapped(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    differ = [i for i in range(len(a)) if a[i] != b[i]]
    return (
        len(differ) == 2
        and differ[1] == differ[0] + 1
        and a[differ[0]] == b[differ[1]]
        and (a[differ[1]] == b[differ[0]])
    )


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap neighbours) from `a` to `b`."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i, *([0] * len(b))]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def _required_parameters(cls: type, owner: str, name: str) -> str | None:
    """A hook tether calls with no arguments must not require any (aiomisc's stop(exc))."""
    attr = inspect.getattr_static(cls, name, None)
    if isinstance(attr, staticmethod):
        function, skip = attr.__func__, 0
    elif isinstance(attr, classmethod):
        function, skip = attr.__func__, 1
    elif inspect.isfunction(attr):
        function, skip = attr, 1
    else:
        return None
    try:
        parameters = list(inspect.signature(function).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None
    required = [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not required:
        return None
    shown = ", ".join(repr(p) for p in required)
    return (
        f"{owner}.{name} requires {shown}, but tether calls hooks with no arguments "
        f"(aiomisc's stop(exception) is written `async def stop(self)`: the error that "
        f"caused a stop is raised by run() and wait()). Give it a default or remove it."
    )
