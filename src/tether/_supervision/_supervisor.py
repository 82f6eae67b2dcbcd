"""The Supervisor: a service that restarts its children as Erlang/OTP does (see `_policy`).

A [`Supervisor`][tether.Supervisor] is a service whose dependencies are its children, started one
after another in the order given. While it runs, an exit of a child (a crash, a stop it
requested, a cancelled task) reaches the supervisor instead of crashing the stack: the
engine's `signal_exit` hands it over through `supervised_exit`. The supervisor's
own task then restarts children with the engine's operations (`stop_root` and
`start_root` on each child, its hold turned into a root hold for the while), so
ordering, rollback, timeouts and events are the engine's own.

While it stops or starts children, the supervisor claims its own record with an
operation: anything that wants to stop or reload the supervisor meanwhile waits for the
round to finish, as it would for any busy service. `start_child`, `terminate_child`,
`restart_child` and `delete_child` claim it the same way, so they take turns with the
rounds, one at a time, as calls to an OTP supervisor do. A child added while it runs
is started as a root of its own, then becomes a dependency of the supervisor (`attach`,
kept in order by `Children`): from then on the engine treats it as any child.

Longer than 600 lines because the supervisor is one state machine: its rounds of
restarts and the calls that add, stop and remove children share its list, its claim
and its queue of exits, and are read against each other.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, overload

from tether._core._base import ServiceBase, record
from tether._core._engine import claim, signal_exit, start_root, stop_root, unclaim, wait_released
from tether._core._errors import DefinitionError, DependencyCycleError, ServiceStateError
from tether._core._events import EventKind, LifecycleEvent, publish, publishing
from tether._core._graph import path_to
from tether._core._records import (
    Node,
    Record,
    ServiceState,
    display_name,
    hold,
    order_after,
    unhold,
)
from tether._core._scheduler import Operation
from tether._core._service import Service

from ._children import Children, brought_up, running_dependents
from ._policy import (
    Backoff,
    ExitKind,
    MaxChildrenError,
    Restart,
    RestartIntensityError,
    Strategy,
    affected,
    cause_text,
    choice,
    depends_on,
    restart_type,
    restarts_after,
    subtree,
)

if TYPE_CHECKING:
    from tether._inject._container import Container

_S = TypeVar("_S", bound=ServiceBase)

__all__ = [
    "Supervisor",
    "added_children",
    "children_by_state",
    "supervised_cancel",
    "supervised_exit",
]

logger = logging.getLogger("tether.supervise")

_RUNNING: Final = ServiceState.RUNNING
_STARTING: Final = ServiceState.STARTING
_BUSY: Final = (ServiceState.STARTING, ServiceState.RUNNING, ServiceState.STOPPING)


_Pending = tuple[Record, int | None, BaseException | None, ExitKind]
"""An exit heard: the child, the run it exited from (`seq`; None for a failed
restart; `_STARTING_RUN` while that run starts), its cause and kind."""

_STARTING_RUN: Final = -1


class Supervisor(Service):
    """A service that starts `children` in order and restarts them as Erlang/OTP does.

    Children start one after another in the order given (each after the previous one
    runs) and stop in reverse. When a child exits while the supervisor runs, the
    supervisor handles it instead of the crash reaching the services above:

    * whether the child is restarted depends on its `restart` attribute
      ([`Restart`][tether.Restart], `PERMANENT` by default) and on how it exited: an exception
      in a background task (or in `start` on a restart) is abnormal; a stop the
      child requested itself (`request_stop()`) is `normal`; a background task
      cancelled by anything but a stop is `shutdown`;
    * which children restart depends on `strategy` ([`Strategy`][tether.Strategy]); children
      that depend on a restarted child (directly or through services of their own)
      are stopped before it and started after it, whatever the strategy;
    * at most `max_restarts` restarts within `max_seconds` (OTP's intensity and
      period; default 1 in 5 s, as OTP). One more stops every child in reverse order
      and raises [`RestartIntensityError`][tether.RestartIntensityError] to the supervisor's parent;
    * `backoff` (a [`Backoff`][tether.Backoff]) delays each restart, growing with the restarts
      in the window;
    * exits are handled one at a time, in the order they happened (OTP's mailbox); an
      exit of a child that a strategy has stopped since is ignored, as OTP ignores an
      `EXIT` whose pid no longer matches;
    * a service outside the supervisor that depends on a child (attached after the
      supervisor started) stops before the child does; if it still holds the child
      after the child's `graceful_shutdown_timeout` (10 s at most), the supervisor
      fails with ServiceStateError naming it.

    Children can also come and go while it runs (OTP's `start_child`,
    `terminate_child`, `restart_child`, `delete_child`; Elixir's `DynamicSupervisor`):
    see [`start_child`][tether.Supervisor.start_child]. `max_children` bounds how many
    children `start_child` may add (None: no bound); `container` builds the children
    `start_child` is given as classes.

    Every restart is logged with its cause and counted in [`status`][tether.status].
    A supervisor is a child like any other for a parent supervisor:

    ```python
    app = tether.Supervisor(
        [Database(), tether.Supervisor([Consumer(), Publisher()], strategy="one_for_all")],
        strategy=tether.Strategy.REST_FOR_ONE, max_restarts=3, max_seconds=10,
    )
    tether.run(app)
    ```

    Raises TypeError or ValueError at once for children that are not services (or
    are listed twice), an unknown strategy, a negative `max_restarts`, a
    `max_seconds` that is not positive or a negative `max_children`;
    DefinitionError for a child whose `restart` is not a [`Restart`][tether.Restart].
    When it starts, DefinitionError if a child is already supervised elsewhere, or
    if a service outside this supervisor depends on a child (put that service under
    the supervisor too).
    """

    def __init__(
        self,
        children: Iterable[ServiceBase] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 1,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        restart: Restart | str = Restart.PERMANENT,
        max_children: int | None = None,
        container: Container | None = None,
        name: str | None = None,
    ) -> None:
        given: object = children
        if isinstance(given, ServiceBase | str | bytes) or not isinstance(given, Iterable):
            raise TypeError(
                f"Supervisor(children) takes a list of services, got {given!r} "
                f"({type(given).__name__})."
            )
        listed = list(given)
        seen: set[int] = set()
        for position, child in enumerate(listed):
            if not isinstance(child, ServiceBase):
                hint = (
                    f" It is a class; did you mean {child.__qualname__}()?"
                    if isinstance(child, type)
                    else ""
                )
                raise TypeError(
                    f"Supervisor children[{position}] is {child!r} ({type(child).__name__}), "
                    f"not a service.{hint} A supervisor starts its children one after "
                    f"another, so nested lists are not allowed either."
                )
            if id(child) in seen:
                raise ValueError(
                    f"Supervisor children[{position}] ({display_name(child)}) is listed twice."
                )
            seen.add(id(child))
            restart_type(child)
        strategy = choice(Strategy, "strategy", strategy)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            raise TypeError(
                f"Supervisor(max_restarts={max_restarts!r}) must be an int (0 or more)."
            )
        if max_restarts < 0:
            raise ValueError(f"Supervisor(max_restarts={max_restarts!r}) must be 0 or more.")
        seconds: object = max_seconds
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not seconds > 0
            or math.isinf(max_seconds)
        ):
            raise ValueError(
                f"Supervisor(max_seconds={max_seconds!r}) must be a positive, finite "
                f"number of seconds."
            )
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"Supervisor(backoff={backoff!r}) must be a tether.Backoff or None.")
        restart = choice(Restart, "restart", restart)
        bound: object = max_children
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
            raise TypeError(
                f"Supervisor(max_children={max_children!r}) must be an int (0 or more) or None."
            )
        if max_children is not None and max_children < 0:
            raise ValueError(f"Supervisor(max_children={max_children!r}) must be 0 or more.")
        if container is not None and not callable(getattr(container, "call", None)):
            raise TypeError(
                f"Supervisor(container={container!r}) must be a tether.Container or None."
            )
        self.children: tuple[ServiceBase, ...] = tuple(listed)
        self.strategy: Strategy = strategy
        self.max_restarts: int = max_restarts
        self.max_seconds: float = float(max_seconds)
        self.backoff: Backoff | None = backoff
        self.restart: Restart = restart
        self.max_children: int | None = max_children
        self.container: Container | None = container
        if name is not None:
            self.name = name
        self._history: deque[float] = deque()
        self._pending: deque[_Pending] = deque()
        self._queued: set[tuple[Record, int | None]] = set()
        """(child, run) of each exit in `_pending`: a run exits once."""
        self._wake: asyncio.Event | None = None
        self._removed: set[Record] = set()
        self._resume: set[Record] = set()
        self._order_edges: dict[Record, list[Node]] = {}
        self._children = Children()
        self._active = False
        self._down: set[Record] = set()
        self._held: Operation | None = None
        self._claimer: asyncio.Task[Any] | None = None
        self._busy: Record | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def dependencies(self) -> list[ServiceBase]:
        """The children given, started one after another in the order given."""
        return list(self.children)

    def __repr__(self) -> str:
        added = len(self._children.dynamic)
        more = f"+{added}" if added else ""
        return (
            f"<{display_name(self)} {record(self).state.value} strategy={self.strategy.value} "
            f"children={len(self.children)}{more} "
            f"intensity={self.max_restarts}/{self.max_seconds}s>"
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Take charge of the children (they run already) and start supervising."""
        own = record(self)
        records = [record(child) for child in self.children]
        inside = subtree(records)
        inside.add(own)
        for rec in records:
            other = rec.supervisor
            if other is not None and other is not self:
                raise DefinitionError(
                    f"{rec.name} is supervised by {display_name(other)} already; a service "
                    f"has one supervisor. Give {display_name(self)} a service of its own."
                )
            outside = [h.name for h in rec.holders if h not in inside]
            if outside:
                raise DefinitionError(
                    f"{', '.join(sorted(outside))} depend(s) on {rec.name}, a child of "
                    f"{display_name(self)}, from outside the supervisor: restarting "
                    f"{rec.name} would leave them using a dead dependency. Make them "
                    f"children of {display_name(self)} (after {rec.name}), so they are "
                    f"restarted with it."
                )
        self._history.clear()
        self._pending.clear()
        self._queued.clear()
        self._removed.clear()
        self._resume.clear()
        self._down.clear()
        self._wake = asyncio.Event()
        for rec in records:
            rec.supervisor = self
        # The edges that order each child after the one listed before it (beyond its
        # own dependencies): a restart starts a child as a root of its own, which
        # forgets them, and without them the stop would not run in reverse start order.
        self._order_edges = {
            rec: [node for node in rec.after if node not in rec.deps] for rec in records
        }
        self._children.reset(_start_order(records))
        self._active = True
        self._task = self.add_task(self._supervise(), name=f"{display_name(self)} supervision")

    async def stop(self) -> None:
        """Stop supervising; the engine then stops the children in reverse order.

        The children added while it ran belong to this run: they stop with it (they
        are its dependencies) and are no longer listed.
        """
        self._active = False
        for rec in self._children:
            if rec.supervisor is self:
                rec.supervisor = None
        for child in self.children:
            rec = record(child)
            if rec.supervisor is self:
                rec.supervisor = None
        self._children.forget_dynamic()

    # ------------------------------------------------------- children at run time

    @overload
    async def start_child(self, child: type[_S], /, **arguments: Any) -> _S: ...
    @overload
    async def start_child(self, child: _S, /) -> _S: ...
    async def start_child(self, child: type[_S] | _S, /, **arguments: Any) -> _S:
        """Add `child` at the end of the children and start it (OTP's `start_child`).

        `child` is a service, or a service class: the supervisor's `container` then
        builds a new one, injecting each parameter of its `__init__` (keyword
        `arguments` fill parameters by name, as in `Container.call`), so it gets
        its dependencies (a database pool, the config) from the container. Its own
        dependencies that do not run yet start with it. Returns the running child:

        ```python
        sup = tether.Supervisor(max_children=1000, container=container)
        ...
        async def on_connection(reader, writer):
            await sup.start_child(Session, reader=reader, writer=writer)
        ```

        From then on it is a child like those given to the supervisor: its `restart`
        type, the strategy and the restart intensity apply to it, it stops before the
        supervisor's other children (the last added first, one at a time, as OTP),
        and the status tree shows it under the supervisor. Unlike a child given to the
        supervisor, one that exits and is not restarted (a `TEMPORARY` one, or a
        `TRANSIENT` one that stopped normally) is removed, as from Elixir's
        `DynamicSupervisor`: a session or a job that ends leaves nothing behind. A
        supervisor's later runs start with the children it was given only.

        Calls that change the children take turns with each other and with restarts.
        Raises [`MaxChildrenError`][tether.MaxChildrenError] when `max_children` children
        added this way are present already; ServiceStateError when the supervisor does
        not run (or is stopping), when `child` runs already or is a child already, or
        when it needs a child of this supervisor that is down; DefinitionError when it
        is supervised elsewhere; TypeError for a class without a `container`. If the
        child's start fails, what it had started is stopped and its exception is raised.
        """
        own = record(self)
        self._check_running("start_child")
        self._check_room()
        service = await self._build(child, arguments)
        rec = record(service)
        restart_type(service)
        self._check_new_child(rec)
        await self._claim_for("start_child")
        try:
            # Checked again: while this call waited for its turn, another may have added
            # it, another supervisor taken it, or another root started it.
            self._check_room()
            self._check_new_child(rec)
            self._check_no_cycle(rec)
            await self._start_root(rec, "start")
            rec.root_holds -= 1
            self._children.add(own, rec)
        except BaseException:
            if rec.supervisor is self and rec not in self._children:
                rec.supervisor = None
            raise
        finally:
            self._release()
        return cast("_S", service)

    async def terminate_child(self, child: ServiceBase, /) -> None:
        """Stop `child` and the children that depend on it (OTP's `terminate_child`).

        They stop in reverse start order, with the engine, as for a restart. They stay
        down: a `TEMPORARY` one, or one added with `start_child`, is removed from the
        supervisor; another one stays among its children, terminated, until
        [`restart_child`][tether.Supervisor.restart_child] or
        [`delete_child`][tether.Supervisor.delete_child] (a `one_for_all` or
        `rest_for_one` restart that takes it starts it again, as in OTP). A child that
        is down already is left as it is. Raises ServiceStateError when `child` is not
        a child of this supervisor, or the supervisor does not run.
        """
        rec = self._child_record(child, "terminate_child")
        self._check_running("terminate_child")
        await self._claim_for("terminate_child")
        try:
            if rec not in self._children:
                return  # removed meanwhile (it exited and was not restarted)
            own = record(self)
            going = {rec} | running_dependents([rec], self._children, own)
            stopping = self._children.sort(going)
            await self._stop_children(stopping)
            for down in stopping:
                self._leave_down(own, down)
            logger.info("%s terminated %s", display_name(self), rec.name)
        finally:
            self._release()

    async def restart_child(self, child: ServiceBase, /) -> None:
        """Start a terminated child again (OTP's `restart_child`).

        The children it depends on must run. Not counted as a restart in the restart
        intensity nor in `status(...).restarts`. Raises ServiceStateError when it is
        not a child, is not down, or needs a child that is down; its start's exception
        when that fails (it stays down).
        """
        rec = self._child_record(child, "restart_child")
        self._check_running("restart_child")
        await self._claim_for("restart_child")
        try:
            if rec.state in _BUSY:
                raise ServiceStateError(
                    f"{display_name(self)}.restart_child({rec.name}): it is {rec.state.value}; "
                    f"only a child that is down can be started again."
                )
            self._removed.discard(rec)
            await self._start_root(rec, "restart")
            self._take_over(rec)
            logger.info("%s started %s again (restart_child)", display_name(self), rec.name)
        finally:
            self._release()

    async def delete_child(self, child: ServiceBase, /) -> None:
        """Remove a terminated child from the supervisor (OTP's `delete_child`).

        A child it was given comes back when the supervisor itself starts again.
        Raises ServiceStateError when `child` is not a child or still runs.
        """
        rec = self._child_record(child, "delete_child")
        await self._claim_for("delete_child", running=False)
        try:
            if rec.state in _BUSY:
                raise ServiceStateError(
                    f"{display_name(self)}.delete_child({rec.name}): it is {rec.state.value}; "
                    f"terminate_child it first."
                )
            self._leave_down(record(self), rec, delete=True)
        finally:
            self._release()

    def which_children(self) -> list[ServiceBase]:
        """The children, in start order: those given (less deleted ones), then those added.

        Running or down (a child left down by its restart type, or terminated).
        """
        return [rec.service for rec in self._children]

    async def _build(self, child: object, arguments: dict[str, Any]) -> ServiceBase:
        if isinstance(child, type):
            container = self.container
            if container is None:
                raise TypeError(
                    f"{display_name(self)}.start_child({child.__qualname__}) is given a "
                    f"class, which the supervisor builds with its container, and it has "
                    f"none: give it one, tether.Supervisor(..., container=container), "
                    f"or pass an instance, start_child({child.__qualname__}(...))."
                )
            built: object = await container.call(child, **arguments)
            child = built
        elif arguments:
            raise TypeError(
                f"{display_name(self)}.start_child() takes keyword arguments only with a "
                f"class (they fill its parameters); {child!r} is built already."
            )
        if not isinstance(child, ServiceBase):
            hint = ""
            if asyncio.iscoroutine(child):
                child.close()
                hint = " (a coroutine: pass the service, not a call)"
            raise TypeError(
                f"{display_name(self)}.start_child() takes a service or a service class, "
                f"got {child!r} ({type(child).__name__}){hint}."
            )
        return child

    def _child_record(self, child: object, doing: str) -> Record:
        if not isinstance(child, ServiceBase):
            raise TypeError(
                f"{display_name(self)}.{doing}() takes a child service, got {child!r} "
                f"({type(child).__name__})."
            )
        rec = record(child)
        if rec not in self._children:
            raise ServiceStateError(
                f"{display_name(self)}.{doing}({rec.name}): it is not a child of "
                f"{display_name(self)} (see which_children())."
            )
        return rec

    def _check_running(self, doing: str) -> None:
        own = record(self)
        if own.state is not _RUNNING or own.stopping or not self._active:
            state = "stopping" if own.stopping else own.state.value
            raise ServiceStateError(
                f"{display_name(self)}.{doing}() needs a running supervisor; it is {state}."
            )

    async def _claim_for(self, doing: str, *, running: bool = True) -> None:
        """Own our record for a call that changes the children; errors that say why not."""
        if self._waits_for_itself():
            raise ServiceStateError(
                f"{display_name(self)}.{doing}() called from code that "
                f"{display_name(self)} is waiting for (a hook of a service it is "
                f"starting or stopping): it would wait for itself. Call it from a "
                f"task instead (service.add_task)."
            )
        if running:
            if not await self._claim():
                self._check_running(doing)
                raise ServiceStateError(f"{display_name(self)}.{doing}(): it is stopping.")
            return
        held = await claim(record(self))
        if held is None:
            raise ServiceStateError(f"{display_name(self)}.{doing}(): it is stopping.")
        self._held = held
        self._claimer = asyncio.current_task()

    def _waits_for_itself(self) -> bool:
        """Whether the current task is one the supervisor waits for right now.

        The task of a hook of its own start or stop, or, while it holds its claim, the
        task that took it or the task of a hook of the child it is starting or
        stopping: a call that claims the supervisor would wait for that task forever.
        """
        current = asyncio.current_task()
        if current is None:
            return False
        op = record(self).op
        if op is not None and op.owns(current):
            return True
        if self._held is None:
            return False
        if current is self._claimer or current is self._task:
            return True
        busy = self._busy
        return busy is not None and busy.op is not None and busy.op.owns(current)

    def _check_new_child(self, rec: Record) -> None:
        """`rec` can be added: not a child yet, not supervised elsewhere, not running."""
        if rec in self._children or rec is record(self):
            raise ServiceStateError(
                f"{rec.name} is a child of {display_name(self)} already; a service is "
                f"added once (restart_child starts a terminated one again)."
            )
        other = rec.supervisor
        if other is not None and other is not self:
            raise DefinitionError(
                f"{rec.name} is supervised by {display_name(other)} already; a service has "
                f"one supervisor."
            )
        if rec.state in _BUSY:
            raise ServiceStateError(
                f"{display_name(self)}.start_child({rec.name}): it is {rec.state.value} "
                f"already; give start_child a service that does not run, which the "
                f"supervisor then starts and owns."
            )

    def _check_no_cycle(self, rec: Record) -> None:
        """`rec` does not need this supervisor, which is about to depend on it.

        Its start would wait for the supervisor, which waits for that start: refuse it
        with the cycle instead, as a cycle in `dependencies` is refused.
        """
        path = path_to(rec, _needing(record(self)))
        if path is None:
            return
        own = record(self)
        tail = _path_down(path[-1], own)
        cycle = [*path, *tail[1:], rec]
        shown = " -> ".join(display_name(r.service) for r in cycle)
        raise DependencyCycleError(
            f"Dependency cycle: {shown}. {display_name(self)}.start_child({rec.name}) "
            f"would make {display_name(self)} depend on a child that needs it. Hand the "
            f"child a function that calls start_child instead of the supervisor (or what "
            f"depends on it), or start it outside the supervisor.",
            tuple(r.service for r in cycle),
        )

    def _check_room(self) -> None:
        bound = self.max_children
        if bound is not None and len(self._children.dynamic) >= bound:
            raise MaxChildrenError(
                f"{display_name(self)} has {len(self._children.dynamic)} children added by "
                f"start_child, its max_children; wait for one to end, or raise "
                f"max_children."
            )

    # --------------------------------------------------------- hearing of exits

    def child_exited(self, rec: Record, exc: BaseException | None) -> Iterable[Record]:
        """The engine's `signal_exit` reached `rec`, a child: the exit is ours.

        Returns the holders the exit still propagates to: all of them but this
        supervisor when it took the exit over, every holder when it is not supervising.
        """
        return supervised_exit(rec, exc)

    def child_cancelled(self, rec: Record, task: asyncio.Task[object]) -> None:
        """A background task of `rec` ended cancelled while `rec` ran."""
        supervised_cancel(rec, task)

    def _notify(self, child: Record, cause: BaseException | None, kind: ExitKind) -> bool:
        """A child exited; queue it. False when not supervising (the exit propagates).

        The exit is stamped with the run it ends (`seq`, which changes on every
        start), as OTP's exit message carries the pid: a run exits once, whatever else
        its tasks do afterwards.
        """
        own = record(self)
        if not self._active or own.state is not _RUNNING or own.stopping:
            return False
        run = child.seq if child.state is not _STARTING else _STARTING_RUN
        if (child, run) in self._queued:
            return True
        self._queued.add((child, run))
        self._pending.append((child, run, cause, kind))
        if self._wake is not None:
            self._wake.set()
        return True

    # ---------------------------------------------------------------- the loop

    async def _supervise(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            while self._pending:
                exit_ = self._pending.popleft()
                self._queued.discard((exit_[0], exit_[1]))
                if not _current(exit_):
                    continue
                if not await self._handle(exit_):
                    return

    async def _handle(self, exit_: _Pending) -> bool:
        """React to one exit; False once the supervisor gave up or is being stopped."""
        failed, _, cause, kind = exit_
        if not await self._claim():
            return False
        children = self._children
        if not _current(exit_) or failed not in children:
            self._release()  # a call that changes the children went first
            return True
        own = record(self)
        restart = restarts_after(restart_type(failed.service), kind)
        chosen, down = affected(
            self.strategy,
            children.order,
            failed,
            restart=restart,
            dependents=lambda targets: running_dependents(targets, children, own),
        )
        chosen |= self._resume
        chosen -= down
        try:
            if restart and self._count_restart():
                await self._give_up(cause, kind, failed)
                return False
            if not restart:
                logger.info(
                    "%s exited (%s); %s leaves it down (restart=%s)",
                    failed.name,
                    cause_text(kind, cause),
                    display_name(self),
                    restart_type(failed.service).value,
                )
            stopping = children.sort(chosen | down)
            await self._stop_children(stopping)
            for rec in stopping:
                if rec in down:
                    self._leave_down(own, rec)
                elif restart_type(rec.service) is Restart.TEMPORARY:
                    self._leave_down(own, rec)  # as in OTP: not started again
        finally:
            self._release()
        removed = self._removed
        to_start = children.sort(
            r for r in chosen if r in children and r not in removed and not depends_on(r, removed)
        )
        self._resume = set(to_start)
        if not to_start:
            return True
        if self.backoff is not None and restart:
            await asyncio.sleep(self.backoff.delay(len(self._history)))
        if not await self._claim():
            return False
        try:
            for rec in to_start:
                if rec not in children:
                    self._resume.discard(rec)  # deleted during the backoff
                    continue
                if not await self._start_child(rec, failed, cause, kind):
                    return True  # its failure is queued: the next round goes on from here
                self._resume.discard(rec)
        finally:
            if self._release():
                await asyncio.sleep(0)  # let the operation waiting for us go first
        return True

    def _count_restart(self) -> bool:
        """Record one restart now; True if that exceeds the intensity (OTP's add_restart)."""
        now = asyncio.get_running_loop().time()
        history = self._history
        threshold = now - self.max_seconds
        while history and history[0] < threshold:
            history.popleft()
        history.append(now)
        return len(history) > self.max_restarts

    def _leave_down(self, own: Record, rec: Record, *, delete: bool = False) -> None:
        """`rec` stays down: a dynamic child leaves, a static one stays listed as down.

        A `TEMPORARY` child is not started again by a later restart of its group
        (OTP deletes its spec); with `delete`, a static child leaves the list too, until
        the supervisor's next start.
        """
        self._resume.discard(rec)
        if self._children.is_dynamic(rec):
            self._down.discard(rec)
            if rec.supervisor is self:
                rec.supervisor = None
            self._children.remove(own, rec)
        elif delete:
            self._down.discard(rec)
            if rec.supervisor is self:
                rec.supervisor = None
            self._children.delete_static(own, rec)
            self._removed.add(rec)
        elif restart_type(rec.service) is Restart.TEMPORARY:
            self._removed.add(rec)

    # --------------------------------------------------------- claiming ourselves

    async def _claim(self) -> bool:
        """Own our record for a round of stops and starts; False if we are being stopped."""
        own = record(self)
        if not self._supervising():
            return False
        held = await claim(own)
        if held is None:
            return False
        if not self._supervising():
            unclaim(own, held)
            return False
        self._held = held
        self._claimer = asyncio.current_task()
        return True

    def _supervising(self) -> bool:
        own = record(self)
        return self._active and not own.stopping and own.state is _RUNNING

    def _release(self) -> bool:
        """Give our record back; True if an operation was waiting for it."""
        held = self._held
        if held is None:
            return False
        self._held = None
        return unclaim(record(self), held)

    # ------------------------------------------------------ stopping and starting

    async def _stop_children(self, stopping: Sequence[Record]) -> None:
        """Stop `stopping` (given in start order) in reverse, one by one, with the engine."""
        own = record(self)
        running = [r for r in stopping if r.state in (_RUNNING, _STARTING) and own in r.holders]
        for rec in reversed(running):
            await self._wait_for_outsiders(rec)
            unhold(rec, own)
            rec.root_holds += 1
            self._down.add(rec)
            self._busy = rec
            dynamic = self._children.is_dynamic(rec)
            if dynamic:
                # Stopped alone, it has no place to keep: without its edge to the child
                # before it, planning this stop does not walk the list of running ones.
                self._children.lose_place(rec)
            try:
                await stop_root(rec.service, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if exc is not rec.error and exc is not rec.crash:
                    logger.exception(
                        "%s: error while stopping %s for a restart",
                        display_name(self),
                        rec.name,
                        exc_info=exc,
                    )
            finally:
                self._busy = None
                if dynamic and self._children.is_dynamic(rec):
                    self._children.keep_place(rec)  # the list's order goes on through it

    async def _wait_for_outsiders(self, rec: Record) -> None:
        """Let services outside the supervisor that depend on `rec` stop first.

        Such a service attached to `rec` after the supervisor started (a second root,
        say); the exit reached it, so its `wait()` raised or returned. It holds
        `rec` until its own stop is over, and `rec` is stopped once nothing outside
        holds it, as a dependent stops before its dependency; at most
        `graceful_shutdown_timeout` of `rec` (10 s at most), then ServiceStateError
        naming them.
        """
        own = record(self)
        children = self._children
        loop = asyncio.get_running_loop()
        bound = min(10.0, float(rec.service.graceful_shutdown_timeout))
        deadline: float | None = None
        while True:
            outside = [h for h in rec.holders if h is not own and h not in children]
            if not outside:
                return
            if deadline is None:
                deadline = loop.time() + bound
            try:
                async with asyncio.timeout_at(deadline):
                    await wait_released(rec)
            except TimeoutError:
                names = ", ".join(sorted({h.name for h in outside}))
                stopping = all(h.state is ServiceState.STOPPING for h in outside)
                state = "is still stopping" if stopping else "still depend(s) on it"
                raise ServiceStateError(
                    f"{display_name(self)} cannot restart {rec.name}: {names}, outside "
                    f"the supervisor, {state} {bound:g}s after "
                    f"being told it exited. Stop such a service when its wait() returns "
                    f"or raises, or make it a child of {display_name(self)}."
                ) from None

    async def _start_root(self, rec: Record, doing: str) -> None:
        """Start `rec` (a child that is down) as a root, for `doing`; it stays a root.

        Refuses, stopping it again, when its start brought up children of ours that
        were down: they would run unsupervised, held by it alone.
        """
        rec.supervisor = self
        self._busy = rec
        try:
            await start_root(rec.service)
        except BaseException:
            self._stamp_starting(rec, None)
            raise
        finally:
            self._busy = None
        self._stamp_starting(rec, rec.seq)
        own = record(self)
        brought = [r for r in self._down if r is not rec and r.state is _RUNNING]
        brought = [r for r in brought if own not in r.holders]
        if brought:
            await stop_root(rec.service, None)
            names = ", ".join(r.name for r in self._children.sort(brought))
            raise ServiceStateError(
                f"{display_name(self)} cannot {doing} {rec.name}: it needs {names}, "
                f"child(ren) of {display_name(self)} that are down. Start them first "
                f"(restart_child), or wait for their restart."
            )
        self._down.discard(rec)

    def _take_over(self, rec: Record) -> None:
        """`rec`, just started as a root, is held by the supervisor again, in its place."""
        own = record(self)
        rec.root_holds -= 1
        hold(rec, own)
        if self._children.is_dynamic(rec):
            self._children.keep_place(rec)
            self._children.place_brought(own, rec)
        else:
            ordering = [n for n in self._order_edges.get(rec, ()) if n not in rec.after]
            if ordering:
                order_after(rec, ordering)
                # What its start brought up for it alone stops before those too, as when
                # the supervisor's own start brought it up.
                for node in brought_up(rec, self._children, own):
                    node.after = (*node.after, *(n for n in ordering if n not in node.after))
        self._keep_place_above()

    def _keep_place_above(self) -> None:
        """What this supervisor started again keeps its place in the supervisors above it.

        A child it restarts started as a root of its own, which forgot the edges a
        supervisor above gave it when this supervisor was added there with
        `start_child` (its children are what the start of this supervisor brought up):
        without them, that child would stop together with the child before this
        supervisor in the list above, instead of before it.
        """
        child = record(self)
        parent = child.supervisor
        while isinstance(parent, Supervisor) and child in parent._children:
            if parent._children.is_dynamic(child):
                parent._children.place_brought(record(parent), child)
            child = record(parent)
            parent = child.supervisor

    async def _start_child(
        self, rec: Record, failed: Record, cause: BaseException | None, kind: ExitKind
    ) -> bool:
        """Start one child again with the engine's start; False if its start failed."""
        own = record(self)
        if own in rec.holders and rec.state is _RUNNING:
            return True
        try:
            await self._start_root(rec, "restart")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("%s: %s failed to start again", display_name(self), rec.name)
            rec.supervisor = self
            self._pending.appendleft((rec, None, exc, ExitKind.EXCEPTION))
            self._queued.add((rec, None))
            return False
        self._take_over(rec)
        rec.restarts += 1
        why = cause_text(kind, cause)
        detail = (
            f"{why}"
            if rec is failed
            else f"{failed.name} exited ({why}); strategy {self.strategy.value}"
        )
        logger.warning(
            "%s restarted by %s (restart %d): %s",
            rec.name,
            display_name(self),
            rec.restarts,
            detail,
        )
        if publishing():
            publish(
                LifecycleEvent(
                    kind=EventKind.RESTART,
                    service=rec.service,
                    error=cause if kind is ExitKind.EXCEPTION else None,
                    count=rec.restarts,
                    detail=detail,
                )
            )
        return True

    def _stamp_starting(self, rec: Record, run: int | None) -> None:
        """Exits `rec` made while starting end the run now begun; none if it failed."""
        if (rec, _STARTING_RUN) not in self._queued:
            return
        self._queued.discard((rec, _STARTING_RUN))
        pending = self._pending
        for i, (child, stamp, cause, kind) in enumerate(pending):
            if child is rec and stamp == _STARTING_RUN:
                if run is None:
                    del pending[i]
                else:
                    pending[i] = (child, run, cause, kind)
                    self._queued.add((child, run))
                return

    async def _give_up(self, cause: BaseException | None, kind: ExitKind, failed: Record) -> None:
        """Intensity exceeded: stop every child in reverse order, then exit (escalate)."""
        error = RestartIntensityError(
            f"{display_name(self)} gave up: {len(self._history)} restarts within "
            f"{self.max_seconds:g}s exceed max_restarts={self.max_restarts}; the last "
            f"was {failed.name} ({cause_text(kind, cause)}). Its children were stopped; "
            f"the failure goes to its parent."
        )
        if cause is not None and (
            kind is ExitKind.EXCEPTION or isinstance(cause, RestartIntensityError)
        ):
            # A child supervisor's give-up carries its own cause: the chain leads from
            # the outermost error down to the first failure.
            error.__cause__ = cause
        logger.error("%s", error)
        order = self._children.order()
        await self._stop_children(order)
        self._active = False
        for rec in order:
            if rec.supervisor is self:
                rec.supervisor = None
        own = record(self)
        own.crash = own.crash or error
        self._release()
        signal_exit(own, error)


def _start_order(records: list[Record]) -> list[Record]:
    """The children in start order: as listed, each after the children it needs.

    This is the order the engine starts them in the first time; restarts keep it,
    and stops run it backwards, whenever each child was last restarted (as OTP).
    """
    remaining = list(records)
    order: list[Record] = []
    while remaining:
        rest = set(remaining)
        for rec in remaining:
            if not depends_on(rec, rest - {rec}):
                order.append(rec)
                remaining.remove(rec)
                break
    return order


def _needing(own: Record) -> set[Record]:
    """`own` and the running services that depend on it, directly or not (its holders, up)."""
    found = {own}
    stack = [own]
    while stack:
        for holder in stack.pop().holders:
            if holder not in found:
                found.add(holder)
                stack.append(holder)
    return found


def _path_down(start: Record, own: Record) -> list[Record]:
    """A path of dependencies from `start` (a service that needs `own`) down to `own`."""
    needing = _needing(own)
    parents: dict[Record, Record | None] = {start: None}
    queue = deque([start])
    while queue:
        rec = queue.popleft()
        if rec is own:
            break
        for dep in rec.deps:
            if dep in needing and dep not in parents:
                parents[dep] = rec
                queue.append(dep)
    path: list[Record] = []
    step: Record | None = own if own in parents else start
    while step is not None:
        path.append(step)
        step = parents[step]
    return path[::-1]


def _current(exit_: _Pending) -> bool:
    """Whether `exit_` ends the child's current run (OTP: the pid still matches).

    An exit heard while the supervisor was busy is for a run that a strategy may have
    stopped since (and maybe started again); OTP drops such an exit message, as its
    pid no longer names the child, and so do we.
    """
    rec, run = exit_[0], exit_[1]
    return run is None or (rec.state is _RUNNING and rec.seq == run)


# ------------------------------------------------------------ the engine's hooks


def supervised_exit(rec: Record, exc: BaseException | None) -> Iterable[Record]:
    """`signal_exit` reached `rec`, a supervised child: hand the exit to its supervisor.

    Returns the holders the exit still propagates to: all of them but the supervisor
    when it took the exit over, every holder when it is not supervising right now.
    """
    supervisor = rec.supervisor
    assert isinstance(supervisor, Supervisor)
    if exc is None:
        kind = ExitKind.NORMAL
    elif isinstance(exc, RestartIntensityError | asyncio.CancelledError):
        kind = ExitKind.SHUTDOWN
    else:
        kind = ExitKind.EXCEPTION
    if not supervisor._notify(rec, exc, kind):
        return rec.holders
    own = record(supervisor)
    return [h for h in rec.holders if h is not own]


def supervised_cancel(rec: Record, task: asyncio.Task[object]) -> None:
    """A background task of a supervised child ended cancelled: a `shutdown` exit.

    Cancellations made by a stop (the service's own, or the loop's teardown) are not
    exits: the child is stopping already.
    """
    del task
    if rec.state is not _RUNNING or rec.stopping or rec.op is not None:
        return
    supervisor = rec.supervisor
    assert isinstance(supervisor, Supervisor)
    if supervisor._notify(rec, None, ExitKind.SHUTDOWN):
        signal_exit(rec, None)


def added_children(service: object) -> Collection[Record]:
    """The children `start_child` added to `service` and still in its list, in start order.

    Empty when `service` is not a [`Supervisor`][tether.Supervisor]. The reports (status
    tree, `/status`, `/metrics`) count these instead of listing each one: a child per
    connection would otherwise be a line, an entry and a series per connection.
    """
    if isinstance(service, Supervisor):
        return service._children.dynamic.keys()
    return ()


def children_by_state(service: object) -> dict[str, int] | None:
    """How many children `service` has in each state (only states it has), given and added.

    OTP's `count_children`, by lifecycle state; None when `service` is not a supervisor.
    """
    if not isinstance(service, Supervisor):
        return None
    counts: dict[str, int] = {}
    for rec in service._children:
        state = rec.state.value
        counts[state] = counts.get(state, 0) + 1
    return counts
