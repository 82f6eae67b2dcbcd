"""Lifecycle stages: the built-in ones and the ones you declare.

A stage is one pass over a graph of services that calls each service's hook for it.
Stages are grouped into phases that the engine runs as a unit: bringing services up
(`start` phase), reloading, taking them down (`stop` phase), and the runner's
`init` and `exit` phases that happen outside the event loop.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "EXIT",
    "INIT",
    "RELOAD",
    "START",
    "STARTED",
    "STOP",
    "STOPPING",
    "Direction",
    "Stage",
]

F = TypeVar("F", bound=Callable[..., Any])


class Direction(enum.StrEnum):
    """The order in which a stage visits the services of a graph."""

    FORWARD = "forward"
    """Dependencies before their dependents; independent services concurrently."""
    BACKWARD = "backward"
    """Dependents before their dependencies; independent services concurrently."""
    GATHER = "gather"
    """Every service at once, ignoring dependencies."""


class _Phase(enum.Enum):
    INIT = "init"
    START = "start"
    RELOAD = "reload"
    STOP = "stop"
    EXIT = "exit"


_creation_order = itertools.count()

DirectionLike = Direction | Literal["forward", "backward", "gather"]


class Stage:
    """A lifecycle stage, built in or declared by you.

    Declare your own stage by placing it `before` or `after` any other stage, with
    a direction, then mark the methods that implement it by using the stage as a
    decorator. Hooks may be sync or async (sync only for stages placed around `init`
    and `exit`, which run outside the event loop):

    ```python
    WARM_UP = tether.Stage("warm_up", after=tether.STARTED, direction="gather")

    class Cache(tether.Service):
        @WARM_UP
        async def fill(self) -> None: ...
    ```

    A subclass that overrides a marked method by name keeps it bound to the stage.
    Stages placed on the same side of the same stage run in the order they were
    declared. The built-in stages call methods with fixed names: `start`, `stop`
    and `on_<stage>` for the others (`on_started`, `on_reload`, `on_stopping`,
    `on_init`, `on_exit`).
    """

    __slots__ = ("_order", "_phase", "after", "before", "direction", "method", "name")

    name: str
    direction: Direction
    before: Stage | None
    after: Stage | None
    method: str | None
    _phase: _Phase
    _order: int

    def __init__(
        self,
        name: str,
        *,
        before: Stage | None = None,
        after: Stage | None = None,
        direction: DirectionLike = Direction.FORWARD,
    ) -> None:
        given: object = name
        if not isinstance(given, str) or not given.isidentifier():
            raise ValueError(f"Stage name must be an identifier, got {name!r}.")
        if (before is None) == (after is None):
            raise TypeError(
                f"Stage {name!r} needs exactly one of before= or after= to place it, "
                f"e.g. Stage({name!r}, after=tether.STARTED)."
            )
        anchor = before if before is not None else after
        if not isinstance(anchor, Stage):
            raise TypeError(
                f"Stage {name!r} must be placed relative to another Stage, "
                f"got {anchor!r} ({type(anchor).__name__})."
            )
        try:
            self.direction = Direction(direction)
        except ValueError:
            raise ValueError(
                f"Stage {name!r}: direction must be one of 'forward', 'backward', "
                f"'gather', got {direction!r}."
            ) from None
        self.name = name
        self.before = before
        self.after = after
        self.method = None
        self._phase = anchor._phase
        self._order = next(_creation_order)

    @classmethod
    def _builtin(cls, name: str, phase: _Phase, direction: Direction, method: str) -> Stage:
        stage = object.__new__(cls)
        stage.name = name
        stage.direction = direction
        stage.before = None
        stage.after = None
        stage.method = method
        stage._phase = phase
        stage._order = next(_creation_order)
        return stage

    @property
    def sync_only(self) -> bool:
        """Whether hooks must be plain functions (stages that run with no event loop)."""
        return self._phase in (_Phase.INIT, _Phase.EXIT)

    def __call__(self, func: F) -> F:
        """Mark `func` as this stage's hook; the method's name does not matter."""
        if self.method is not None:
            raise TypeError(
                f"The built-in stage {self.name!r} calls the method named "
                f"{self.method!r}; define that method instead of decorating "
                f"{getattr(func, '__qualname__', func)!r}."
            )
        if not callable(func):
            raise TypeError(f"@{self.name} decorates a function, got {func!r}.")
        func.__tether_stage__ = self  # type: ignore[attr-defined]
        return func

    def __repr__(self) -> str:
        if self.method is not None:
            return f"<Stage {self.name}>"
        side, anchor = ("before", self.before) if self.before else ("after", self.after)
        assert anchor is not None
        return f"<Stage {self.name} {side}={anchor.name} {self.direction.value}>"


INIT: Final = Stage._builtin("init", _Phase.INIT, Direction.FORWARD, "on_init")
START: Final = Stage._builtin("start", _Phase.START, Direction.FORWARD, "start")
STARTED: Final = Stage._builtin("started", _Phase.START, Direction.FORWARD, "on_started")
RELOAD: Final = Stage._builtin("reload", _Phase.RELOAD, Direction.FORWARD, "on_reload")
STOPPING: Final = Stage._builtin("stopping", _Phase.STOP, Direction.BACKWARD, "on_stopping")
STOP: Final = Stage._builtin("stop", _Phase.STOP, Direction.BACKWARD, "stop")
EXIT: Final = Stage._builtin("exit", _Phase.EXIT, Direction.BACKWARD, "on_exit")

BUILTIN_STAGES: Final = (INIT, START, STARTED, RELOAD, STOPPING, STOP, EXIT)
_BUILTIN_PHASES: Final = {
    phase: tuple(s for s in BUILTIN_STAGES if s._phase is phase) for phase in _Phase
}
_phase_cache: dict[tuple[_Phase, frozenset[Stage]], tuple[Stage, ...]] = {}


def phase_stages(phase: _Phase, custom: Iterable[Stage] = ()) -> tuple[Stage, ...]:
    """The stages of `phase` in run order, including the custom ones given.

    Custom stages bring along the stages they are anchored to, so a stage placed
    relative to another custom stage is positioned even if no service hooks the
    anchor.
    """
    wanted = frozenset(s for s in _with_anchors(custom) if s._phase is phase)
    if not wanted:
        return _BUILTIN_PHASES[phase]
    key = (phase, wanted)
    cached = _phase_cache.get(key)
    if cached is not None:
        return cached
    befores: dict[Stage, list[Stage]] = {}
    afters: dict[Stage, list[Stage]] = {}
    for stage in sorted(wanted, key=lambda s: s._order):
        if stage.before is not None:
            befores.setdefault(stage.before, []).append(stage)
        else:
            assert stage.after is not None
            afters.setdefault(stage.after, []).append(stage)

    ordered: list[Stage] = []
    # Flatten the anchor tree iteratively: befores, the stage itself, then afters.
    stack: list[tuple[Stage, bool]] = [(s, False) for s in reversed(_BUILTIN_PHASES[phase])]
    while stack:
        stage, expanded = stack.pop()
        if expanded:
            ordered.append(stage)
            continue
        stack.extend((s, False) for s in reversed(afters.get(stage, ())))
        stack.append((stage, True))
        stack.extend((s, False) for s in reversed(befores.get(stage, ())))
    result = tuple(ordered)
    _phase_cache[key] = result
    return result


def _with_anchors(stages: Iterable[Stage]) -> set[Stage]:
    seen: set[Stage] = set()
    for stage in stages:
        current: Stage | None = stage
        while current is not None and current.method is None and current not in seen:
            seen.add(current)
            current = current.before or current.after
    return seen
