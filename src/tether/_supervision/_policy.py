"""Restart policy as Erlang/OTP has it: restart types, strategies, intensity and backoff.

The rules a [`Supervisor`][tether.Supervisor] follows, apart from the service that
follows them: when a child that exited is restarted (its `restart` type and how it
exited), which children a strategy takes with it (and those depending on them), how
long to wait before a restart, and how the cause of an exit reads in logs.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from typing import TypeVar

from tether._core._base import ServiceBase
from tether._core._errors import DefinitionError, TetherError
from tether._core._records import Record, display_name

__all__ = [
    "Backoff",
    "ExitKind",
    "MaxChildrenError",
    "Restart",
    "RestartIntensityError",
    "Strategy",
    "affected",
    "cause_text",
    "choice",
    "depends_on",
    "restart_type",
    "restarts_after",
    "subtree",
]


class Restart(enum.StrEnum):
    """When a supervisor restarts a child that exited (Erlang/OTP's restart types).

    Set it as a `restart` attribute on the service (a class attribute, or on the
    instance); the default is `PERMANENT`, as in OTP.
    """

    PERMANENT = "permanent"
    """Always restarted, whatever ended it."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (an exception); a stop it requested
    itself or a cancellation leaves it down."""
    TEMPORARY = "temporary"
    """Never restarted; once it has exited it stays down until its supervisor restarts."""


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one fails (Erlang/OTP's strategies)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child (and the children that depend on it)."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: all are stopped in reverse start order, then started in order."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and those after it in the list: stopped in reverse order,
    started in order."""


class RestartIntensityError(TetherError):
    """A supervisor exceeded its restart intensity and gave up.

    Its children have all been stopped, in reverse order. Like OTP's supervisor, it
    then exits with reason `shutdown`: a parent supervisor restarts it if it is
    `PERMANENT` (and counts that restart), leaves it down if `TRANSIENT` or
    `TEMPORARY`; at the root, `wait()`/`run()` raise this error and
    `tether.run` exits with code 1. `__cause__` is the last child failure; when
    that child is a supervisor that gave up, it is that supervisor's own error, whose
    `__cause__` goes on down, so the chain leads from the outermost supervisor to the
    first failure (and the message names it).
    """


class MaxChildrenError(TetherError):
    """`Supervisor.start_child` refused a child: the supervisor has `max_children` already.

    As Elixir's `DynamicSupervisor` answers `{:error, :max_children}`: nothing was
    started. Catch it to turn the work away (close the connection, reject the job)
    or to wait until a child ends.
    """


class ExitKind(enum.StrEnum):
    """How a child exited, as OTP names the exit reason."""

    EXCEPTION = "exception"
    NORMAL = "normal"
    SHUTDOWN = "shutdown"


class Backoff:
    """Exponential delay before restarting: `initial * factor**(n-1)`, at most `maximum`.

    `n` is the number of restarts within the supervisor's intensity window
    (`max_seconds`), this one included, so the delay grows while failures repeat
    and falls back to `initial` once they stop. Times are in seconds:

    ```python
    tether.Supervisor([worker], max_restarts=10, max_seconds=60,
                      backoff=tether.Backoff(initial=0.1, maximum=5.0))
    ```
    """

    __slots__ = ("factor", "initial", "maximum")

    initial: float
    maximum: float
    factor: float

    def __init__(self, initial: float = 0.1, maximum: float = 10.0, factor: float = 2.0) -> None:
        given: tuple[tuple[str, object], ...] = (
            ("initial", initial),
            ("maximum", maximum),
            ("factor", factor),
        )
        for label, value in given:
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise TypeError(f"Backoff({label}=...) must be a number, got {value!r}.")
            if value < 0 or math.isinf(value):
                raise ValueError(
                    f"Backoff({label}=...) must be a finite number, 0 or more, got {value!r}."
                )
        if factor < 1:
            raise ValueError(f"Backoff(factor=...) must be 1 or more, got {factor!r}.")
        if maximum < initial:
            raise ValueError(
                f"Backoff(maximum={maximum!r}) is smaller than initial={initial!r}; "
                f"the cap must be at least the first delay."
            )
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)

    def delay(self, n: int) -> float:
        """The delay before the `n`-th restart (1-based) within the window."""
        if n <= 1:
            return self.initial
        exponent = min(n - 1, 1024)  # beyond this the cap has long been reached
        try:
            return min(self.maximum, self.initial * self.factor**exponent)
        except OverflowError:
            return self.maximum

    def __repr__(self) -> str:
        return f"Backoff(initial={self.initial}, maximum={self.maximum}, factor={self.factor})"


_Choice = TypeVar("_Choice", Strategy, Restart)


def choice(kind: type[_Choice], label: str, value: object) -> _Choice:
    if isinstance(value, kind):
        return value
    names = ", ".join(repr(member.value) for member in kind)
    if isinstance(value, str):
        if value in kind._value2member_map_:
            return kind(value)
        raise ValueError(
            f"Supervisor({label}={value!r}) is not a known {label}; use one of {names} "
            f"(or tether.{kind.__name__})."
        )
    raise TypeError(
        f"Supervisor({label}=...) takes a tether.{kind.__name__} or one of {names}, "
        f"got {value!r} ({type(value).__name__})."
    )


def restart_type(service: ServiceBase) -> Restart:
    """The `restart` attribute of `service` (PERMANENT when absent), validated."""
    value: object = getattr(service, "restart", Restart.PERMANENT)
    if isinstance(value, Restart):
        return value
    if isinstance(value, str) and value in Restart._value2member_map_:
        return Restart(value)
    raise DefinitionError(
        f"{display_name(service)}.restart is {value!r} ({type(value).__name__}); under a "
        f"supervisor it says when to restart the service and must be "
        f"tether.Restart.PERMANENT, TRANSIENT or TEMPORARY. A method or attribute of "
        f"your own named `restart` conflicts with it: rename it."
    )


def restarts_after(kind: Restart, exit_kind: ExitKind) -> bool:
    if kind is Restart.PERMANENT:
        return True
    if kind is Restart.TRANSIENT:
        return exit_kind is ExitKind.EXCEPTION
    return False


def cause_text(exit_kind: ExitKind, cause: BaseException | None) -> str:
    if isinstance(cause, RestartIntensityError):
        first: BaseException = cause
        while isinstance(first, RestartIntensityError) and first.__cause__ is not None:
            first = first.__cause__
        if first is cause:
            return "it gave up"
        return f"it gave up after {type(first).__name__}: {first}"
    if cause is None or exit_kind is not ExitKind.EXCEPTION:
        return {
            ExitKind.NORMAL: "it requested its own stop",
            ExitKind.SHUTDOWN: "a task of it was cancelled",
            ExitKind.EXCEPTION: "it failed",
        }[exit_kind]
    return f"{type(cause).__name__}: {cause}"


def affected(
    strategy: Strategy,
    order: Callable[[], list[Record]],
    failed: Record,
    *,
    restart: bool,
    dependents: Callable[[set[Record]], set[Record]],
) -> tuple[set[Record], set[Record]]:
    """The children to restart and those to leave down, now that `failed` exited.

    `order()` gives the children in start order (read only by the strategies that
    take more than the failed child); `restart` says whether `failed` itself is
    restarted; `dependents(targets)` are the running children that depend on one of
    `targets`. A restart takes the children `strategy` names and every child that
    depends on one of them; a child left down takes down the children depending on it,
    and so does a `TEMPORARY` child the restart stops (it is not started again).
    """
    if not restart:
        return set(), {failed} | dependents({failed})
    if strategy is Strategy.ONE_FOR_ONE:
        chosen = {failed}
    elif strategy is Strategy.ONE_FOR_ALL:
        chosen = set(order())
    else:
        children = order()
        chosen = set(children[children.index(failed) :])
    chosen |= dependents(chosen)
    temporary = {rec for rec in chosen if restart_type(rec.service) is Restart.TEMPORARY}
    down = dependents(temporary) - temporary if temporary else set()
    return chosen - down, down


def subtree(roots: Iterable[Record]) -> set[Record]:
    """Every record reachable from `roots` through dependencies, `roots` included."""
    seen: set[Record] = set()
    stack = list(roots)
    while stack:
        rec = stack.pop()
        if rec in seen:
            continue
        seen.add(rec)
        stack.extend(rec.deps)
    return seen


def depends_on(rec: Record, targets: set[Record]) -> bool:
    """Whether `rec` depends on any of `targets`, directly or through other services."""
    if not targets:
        return False
    seen: set[Record] = set()
    stack = list(rec.deps)
    while stack:
        dep = stack.pop()
        if dep in targets:
            return True
        if dep not in seen:
            seen.add(dep)
            stack.extend(dep.deps)
    return False
