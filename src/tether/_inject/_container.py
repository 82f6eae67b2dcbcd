"""The container: providers resolved by type annotation, scopes, and the lifecycle wiring.

Resolution walks a provider's parameters: each is looked up by its annotation (a
provider registered under the parameter's own name wins over the unnamed one), built if
needed, and passed in. Singletons are cached in the container that owns their provider,
unless something they (transitively) depend on is overridden in a scope below it; then
they are built and cached in the deepest such scope. A service built this way gets the
services injected into it (directly, or through plain objects) as implicit
dependencies: starting it starts them first, which is how an entrypoint names only its
root and gets exactly the graph it needs.

The sync path (`get`) and the async path (`aget`) are written out twice on purpose:
a cached lookup must cost well under a microsecond, and a coroutine per parameter would
triple the cost of building. Sharing one description of the parameter walk costs too:
a generator per build made resolving in a scope 6 to 11 % slower, and even a shared
lookup of each parameter's provider 4 to 8 % (measured on the scoped override of
`benchmarks/bench_resolve.py`, and on a deeper one). A property test
(`tests/inject/test_sync_async_parity.py`) holds the two paths to the same results.

Longer than 600 lines because `Container` is one class: registration, scopes, both
resolution paths and cleanup share its private state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import typing
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextvars import ContextVar, Token
from typing import Any, Self, TypeVar, overload

from tether._core._base import ServiceBase, add_implicit_dependencies
from tether._core._errors import InjectionCycleError, InjectionError, RegistrationError, TetherError
from tether._core._records import class_label
from tether._core._service import Service

from ._providers import MISSING, Kind, Param, Provider, key_label, registration_site, type_label

__all__ = ["Container"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_CALLS_KEPT = 256
"""Classes whose provider `call` keeps (see `_Tree.calls`)."""

_Frontier = tuple[ServiceBase, ...]
_EMPTY: _Frontier = ()


class _Tree:
    """What a root container shares with all its scopes."""

    __slots__ = ("auto", "calls", "named", "var", "waiting")

    def __init__(self) -> None:
        self.var: ContextVar[Container | None] = ContextVar("tether.container", default=None)
        self.calls: dict[type, Provider] = {}
        """The provider `call` made for each class it was given: reading a signature
        costs far more than a call, and a supervisor builds a class per child again and
        again. Classes only, and at most `_CALLS_KEPT`: a provider refers to what it
        calls, so functions made per call would pile up."""
        self.named: set[Any] = set()
        """Types registered under a name somewhere in the tree."""
        self.auto: dict[Any, Provider] = {}
        """Implicit providers: service classes and config sections."""
        self.waiting: dict[int, _Build] = {}
        """The build each async resolution (by `id` of its stack) is waiting for."""


class _Build:
    """A singleton being built by an async resolution: where its stack was, and its result."""

    __slots__ = ("depth", "future", "stack")

    def __init__(self, future: asyncio.Future[tuple[Any, _Frontier]], stack: list[_Frame]) -> None:
        self.future = future
        self.stack = stack
        self.depth = len(stack)
        """The index in `stack` of the frame of the provider being built."""


class _Frame:
    """One provider being built, for cycle detection and error chains."""

    __slots__ = ("bindings", "param", "provider")

    def __init__(self, provider: Provider, bindings: tuple[Any, ...]) -> None:
        self.provider = provider
        self.bindings = bindings
        self.param: Param | None = None

    def show(self) -> str:
        param = self.param
        return f"{self.provider.label}({param.label if param else ''})"


class Container:
    """Providers of components, resolved by type annotation; a scope of a parent container.

    Register classes, functions, async functions, generators (what follows `yield` is
    the cleanup), classmethods and generic factories as providers of the type they
    return; register existing objects with `add`. Resolve with `get` (sync
    providers only) or `await` `aget`:

    ```python
    container = tether.Container(config=tether.Config().add_toml("app.toml"))
    container.register(make_pool)          # async def make_pool(cfg: DbConfig) -> Pool
    api = await container.aget(Api)        # Api(pool: Pool, client: Client)
    ```

    Rules:

    * A parameter is filled from the provider of its annotation; a provider registered
      under the parameter's name (`register(..., name="replica")` for `replica: Pool`)
      wins over the unnamed one. A parameter with a default is left alone when nothing
      is registered for it; `Foo | None` without a provider gets None.
    * Service classes (`tether.Service`, `tether.BlockingService`) and config
      sections (`@tether.section`) need no registration.
    * Everything is a singleton of the container that registered it, unless registered
      with `transient=True` (a new one per resolution).
    * A service built by the container depends on the services injected into it:
      starting it starts them first (concurrently), stopping it stops it first.
    * `scope()` opens a child that sees its parent and may override it; leaving it
      disposes, in reverse order, what it created.
    * Registering a type twice in one container is an error, raised at once.
    """

    __slots__ = (
        "__weakref__",
        "_building",
        "_cache",
        "_chain",
        "_children",
        "_closures",
        "_finalizers",
        "_frontier",
        "_lent",
        "_parent",
        "_providers",
        "_recipes",
        "_tokens",
        "_tree",
    )

    def __init__(self, *, config: Any = None) -> None:
        """Create a root container.

        `config` is the [`Config`][tether.Config] that config sections load from (an
        empty one if omitted: sections then get their defaults).
        """
        self._setup(None)
        from ._config import Config  # noqa: PLC0415  (config is optional until used)

        self.add(Config() if config is None else config, provides=Config)

    def _setup(self, parent: Container | None) -> None:
        self._parent = parent
        self._tree: _Tree = _Tree() if parent is None else parent._tree
        self._chain: tuple[Container, ...] = (self,) if parent is None else (self, *parent._chain)
        self._providers: dict[Any, Provider] = {}
        self._cache: dict[Any, Any] = {}
        self._frontier: dict[Any, _Frontier] = {}
        self._lent: set[Any] = set()
        """Cache keys whose instance belongs to an ancestor (borrowed, not disposed here)."""
        self._finalizers: list[tuple[str, Callable[[], Any]]] = []
        self._building: dict[Any, _Build] = {}
        self._children: list[Container] = []
        self._tokens: list[Token[Container | None]] = []
        self._closures: dict[tuple[int, tuple[Any, ...]], frozenset[Any]] = {}
        """Keys each provider owned here may look up, transitively (see _home)."""
        self._recipes: dict[Any, Callable[[], Any]] = {}
        """Transient values whose parameters are all cached here: a prepared call."""

    # ------------------------------------------------------------------ register

    def register(
        self,
        provider: F,
        /,
        *,
        provides: Any = None,
        name: str | None = None,
        transient: bool = False,
    ) -> F:
        """Register `provider` as the way to make the type it returns; returns it unchanged.

        `provider` is a class (provides itself, built from its `__init__`
        annotations), a function or async function (provides its return annotation), a
        generator or async generator (provides what it yields; the code after `yield`
        runs when the container or scope is closed), or a classmethod. A generic class
        or a factory returning `Repo[T]` provides `Repo[X]` for every `X`, with
        `T` bound (a `model: type[T]` parameter receives `X`).

        `provides` registers it for another type (a base class or a protocol);
        `name` qualifies it (`get(Pool, "replica")`, or a parameter named
        `replica`); `transient=True` makes a new value on every resolution. Usable
        as a decorator. Raises [`RegistrationError`][tether.RegistrationError] if this container
        already has a provider for the type and name, or the provider is unusable.
        """
        made = Provider.of_callable(
            provider, provides=provides, name=name, transient=transient, where=registration_site()
        )
        self._install(made)
        return provider

    def add(self, instance: T, /, *, provides: Any = None, name: str | None = None) -> T:
        """Register an existing object as the provider of its type; returns it.

        buvar's `context.add`: `provides` registers it for another type (a base
        class), `name` qualifies it. Raises [`RegistrationError`][tether.RegistrationError] on a
        conflict in this container; a scope may add what its parent has (an override).
        """
        made = Provider.of_instance(instance, provides, name, registration_site())
        self._install(made)
        key = _cache_key(made.provides, name)
        self._cache[key] = instance
        self._lent.discard(key)
        return instance

    def _install(self, provider: Provider) -> None:
        provides = provider.provides
        if provider.generic:
            provides = typing.get_origin(provides) or provides
        key = _cache_key(provides, provider.name)
        existing = self._providers.get(key)
        if existing is not None:
            where = "this scope" if self._parent is not None else "this container"
            raise RegistrationError(
                f"{key_label(key)} already has a provider in {where}: "
                f"{existing.describe()}. Registering {provider.describe()} would "
                f"conflict. Give one a name (name=...), or override it in a scope "
                f"(async with container.scope() as scope: scope.add(...))."
            )
        self._providers[key] = provider
        self._cache.pop(key, None)
        self._frontier.pop(key, None)
        if provider.name is not None:
            self._tree.named.add(provides)
        self._closures.clear()
        self._recipes.clear()
        self._forget_lent()

    def _forget_lent(self) -> None:
        """Drop what open scopes derived from their ancestors: a registration may shadow it."""
        pending = list(self._children)
        while pending:
            child = pending.pop()
            child._closures.clear()
            child._recipes.clear()
            for key in child._lent:
                child._cache.pop(key, None)
                child._frontier.pop(key, None)
            child._lent.clear()
            pending.extend(child._children)

    # ------------------------------------------------------------------- resolve

    def _current(self) -> Container:
        """The innermost open scope of this container in the current context, or itself."""
        active = self._tree.var.get()
        if active is None or active is self or self not in active._chain:
            return self
        return active

    def get(self, key: type[T], name: str | None = None, /, **overrides: Any) -> T:
        """Return the `key` of the current scope, building it (and what it needs) if needed.

        buvar's `context.get`. Keyword arguments override parameters of `key`'s
        provider by name (buvar's `di.nject(Foo, baz="baz")`); the result is then
        built anew and not cached. Works with sync providers only: use `aget`
        when an async factory is involved. Raises [`InjectionError`][tether.InjectionError] naming
        the chain of providers when something has no provider, and
        [`InjectionCycleError`][tether.InjectionCycleError] on circular injection.
        """
        scope = self._current()
        if not overrides:
            ck = key if name is None else (key, name)
            value = scope._cache.get(ck, MISSING)
            if value is MISSING:
                recipe = scope._recipes.get(ck)
                value = scope._top(key, name, None)[0] if recipe is None else recipe()
            return typing.cast("T", value)
        return typing.cast("T", scope._top(key, name, overrides)[0])

    async def aget(self, key: type[T], name: str | None = None, /, **overrides: Any) -> T:
        """Like `get`, awaiting async factories and async generators on the way.

        Concurrent resolutions of the same singleton build it once.
        """
        scope = self._current()
        if not overrides:
            ck = key if name is None else (key, name)
            value = scope._cache.get(ck, MISSING)
            if value is not MISSING:
                return typing.cast("T", value)
            recipe = scope._recipes.get(ck)
            if recipe is not None:
                return typing.cast("T", recipe())
        found = await scope._atop(key, name, overrides or None)
        return typing.cast("T", found[0])

    def _top(self, key: Any, name: str | None, overrides: dict[str, Any] | None) -> Any:
        stack: list[_Frame] = []
        if key is Container and name is None:
            return self, _EMPTY
        provider, owner, bindings = self._find(key, name, explicit_only=False, stack=stack)
        if overrides is None:
            found = self._obtain(_cache_key(key, name), provider, owner, bindings, stack)
            if provider.transient and provider.kind is Kind.CALL:
                self._prepare_recipe(_cache_key(key, name), provider, bindings)
            return found
        _check_overrides(provider, bindings, overrides)
        return self._build(provider, bindings, stack, overrides)

    async def _atop(self, key: Any, name: str | None, overrides: dict[str, Any] | None) -> Any:
        stack: list[_Frame] = []
        if key is Container and name is None:
            return self, _EMPTY
        provider, owner, bindings = self._find(key, name, explicit_only=False, stack=stack)
        if overrides is None:
            found = await self._aobtain(_cache_key(key, name), provider, owner, bindings, stack)
            if provider.transient and provider.kind is Kind.CALL:
                self._prepare_recipe(_cache_key(key, name), provider, bindings)
            return found
        _check_overrides(provider, bindings, overrides)
        return await self._abuild(provider, bindings, stack, overrides)

    def _find(
        self, key: Any, name: str | None, *, explicit_only: bool, stack: list[_Frame] | None
    ) -> tuple[Provider, Container, tuple[Any, ...]]:
        """The provider of `key`: registered in this scope or an ancestor, or implicit.

        With `stack` given, a missing provider raises InjectionError; otherwise the
        result's provider is None-like (MISSING) and the caller decides.
        """
        ck = key if name is None else (key, name)
        for container in self._chain:
            provider = container._providers.get(ck)
            if provider is not None and not provider.generic:
                return provider, container, ()
        origin = typing.get_origin(key)
        if origin is not None:
            ok = origin if name is None else (origin, name)
            for container in self._chain:
                provider = container._providers.get(ok)
                if provider is not None and provider.generic:
                    bindings = _bind(provider, key)
                    if bindings is not None:
                        return provider, container, bindings
        if not explicit_only and name is None:
            implicit = self._implicit(key)
            if implicit is not None:
                return implicit, self._chain[-1], ()
        if stack is None:
            return MISSING, self, ()
        raise _missing(stack, key, name)

    def _implicit(self, key: Any) -> Provider | None:
        auto = self._tree.auto
        provider = auto.get(key)
        if provider is not None:
            return provider
        if not isinstance(key, type):
            return None
        section = getattr(key, "__tether_section__", None)
        if isinstance(section, str) and key.__dict__.get("__tether_section__") == section:
            provider = _section_provider(key)
        elif issubclass(key, ServiceBase) and not inspect.isabstract(key):
            provider = Provider.of_callable(key)
        else:
            return None
        auto[key] = provider
        return provider

    # ----------------------------------------------------------- where to cache

    def _home(self, provider: Provider, owner: Container, bindings: tuple[Any, ...]) -> Container:
        """The container a singleton lives in.

        Its owner, or the deepest scope below the owner that overrides something it
        depends on.
        """
        if owner is self:
            return self
        closure: frozenset[Any] | None = None
        for container in self._chain:
            if container is owner:
                break
            if not container._providers:
                continue
            if closure is None:
                closure = self._closure(provider, owner, bindings)
            if not closure.isdisjoint(container._providers):
                return container
        return owner

    def _closure(
        self, provider: Provider, owner: Container, bindings: tuple[Any, ...]
    ) -> frozenset[Any]:
        """Every key `provider` may look up, transitively, as seen from `owner`."""
        tree = self._tree
        memo_key = (id(provider), bindings)
        memo = owner._closures.get(memo_key)
        if memo is not None:
            return memo
        keys: set[Any] = set()
        seen: set[tuple[int, tuple[Any, ...]]] = set()
        pending = [(provider, owner, bindings)]
        while pending:
            current, where, bound = pending.pop()
            mark = (id(current), bound)
            if mark in seen:
                continue
            seen.add(mark)
            keys.add(_cache_key(current.provides, current.name))
            for param in current.plan(bound):
                if param.const is not MISSING:
                    continue
                keys.add(param.key)
                keys.add(param.named_key)
                for candidate, candidate_name in ((param.key, param.name), (param.key, None)):
                    if candidate_name is not None and candidate not in tree.named:
                        continue
                    found, home, found_bindings = where._find(
                        candidate, candidate_name, explicit_only=False, stack=None
                    )
                    if found is not MISSING:
                        pending.append((found, home, found_bindings))
                        break
        result = frozenset(keys)
        owner._closures[memo_key] = result
        return result

    def _prepare_recipe(self, ck: Any, provider: Provider, bindings: tuple[Any, ...]) -> None:
        """Remember how to rebuild a transient from cached values: one call, no lookups.

        Only when every parameter is a cached value of this container (or a constant,
        or a default nothing provides); forgotten on any registration here or above.
        """
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        services: list[ServiceBase] = []
        named = self._tree.named
        for param in provider.plan(bindings):
            if param.const is not MISSING:
                value = param.const
            elif param.key is Container or param.key in named:
                return
            else:
                value = self._cache.get(param.key, MISSING)
                if value is MISSING:
                    if param.default is MISSING:
                        return
                    found, _, _ = self._find(param.key, None, explicit_only=True, stack=None)
                    if found is not MISSING:
                        return
                    continue
                if isinstance(value, ServiceBase):
                    services.append(value)
                else:
                    services.extend(self._frontier.get(param.key, _EMPTY))
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        factory = provider.factory
        assert factory is not None
        call = functools.partial(factory, *args, **kwargs)
        if not services:
            self._recipes[ck] = call
            return
        wired = tuple(dict.fromkeys(services))

        def recipe() -> Any:
            instance = call()
            if isinstance(instance, ServiceBase):
                add_implicit_dependencies(instance, wired)
            return instance

        self._recipes[ck] = recipe

    # --------------------------------------------------------------- sync path

    def _obtain(
        self,
        ck: Any,
        provider: Provider,
        owner: Container,
        bindings: tuple[Any, ...],
        stack: list[_Frame],
    ) -> tuple[Any, _Frontier]:
        value = self._cache.get(ck, MISSING)
        if value is not MISSING:
            return value, self._cached_frontier(ck, value)
        if provider.transient:
            return self._build(provider, bindings, stack, None)
        home = self._home(provider, owner, bindings)
        value = home._cache.get(ck, MISSING)
        if value is MISSING:
            if ck in home._building:
                raise InjectionError(
                    f"{_chain_text(stack, ck)}: being built by an async factory in another "
                    f"task; use `await container.aget(...)`.",
                    _chain_steps(stack),
                )
            value, frontier = home._build(provider, bindings, stack, None)
            home._store(ck, value, frontier)
        else:
            frontier = home._cached_frontier(ck, value)
        if home is not self:
            self._lend(ck, value, frontier)
        return value, frontier

    def _build(
        self,
        provider: Provider,
        bindings: tuple[Any, ...],
        stack: list[_Frame],
        overrides: dict[str, Any] | None,
    ) -> tuple[Any, _Frontier]:
        kind = provider.kind
        if kind is Kind.INSTANCE:
            instance = provider.instance
            return instance, (instance,) if isinstance(instance, ServiceBase) else _EMPTY
        if kind is Kind.ASYNC or kind is Kind.ASYNC_GENERATOR:
            raise InjectionError(
                f"{_chain_text(stack, provider.provides)}: provided by the {kind.value} "
                f"{provider.label}, which container.get() cannot await. Use "
                f"`await container.aget(...)`.",
                _chain_steps(stack),
            )
        frame = _enter(stack, provider, bindings)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        services: list[ServiceBase] = []
        cache = self._cache
        named = self._tree.named
        for param in provider.plan(bindings):
            frame.param = param
            if overrides is not None and param.name in overrides:
                value = overrides[param.name]
                frontier = _EMPTY
            elif param.const is not MISSING:
                value, frontier = param.const, _EMPTY
            elif param.default is MISSING and param.key not in named:
                value = cache.get(param.key, MISSING)
                if value is MISSING:
                    value, frontier = self._param(param, stack)
                else:
                    frontier = self._frontier.get(param.key, _EMPTY)
            else:
                value, frontier = self._param(param, stack)
                if value is MISSING:
                    continue
            if isinstance(value, ServiceBase):
                services.append(value)
            elif frontier:
                services.extend(frontier)
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        stack.pop()
        factory = provider.factory
        assert factory is not None
        try:
            if kind is Kind.GENERATOR:
                generator = factory(*args, **kwargs)
                instance = next(generator)
                self._finalizers.append((provider.label, _closer(generator)))
            else:
                instance = factory(*args, **kwargs)
        except Exception as exc:
            _note_building(exc, stack, provider)
            raise
        return self._wire(instance, services)

    def _param(self, param: Param, stack: list[_Frame]) -> tuple[Any, _Frontier]:
        """Resolve one parameter the slow way: named provider, explicit, default, implicit."""
        if param.key is Container:
            return self, _EMPTY
        if param.key in self._tree.named:
            provider, owner, bindings = self._find(
                param.key, param.name, explicit_only=True, stack=None
            )
            if provider is not MISSING:
                return self._obtain(param.named_key, provider, owner, bindings, stack)
        provider, owner, bindings = self._find(
            param.key, None, explicit_only=param.default is not MISSING, stack=None
        )
        if provider is MISSING:
            if param.default is not MISSING:
                return MISSING, _EMPTY
            if param.optional:
                return None, _EMPTY
            raise _missing(stack, param.key, None)
        return self._obtain(param.key, provider, owner, bindings, stack)

    # -------------------------------------------------------------- async path

    async def _aobtain(
        self,
        ck: Any,
        provider: Provider,
        owner: Container,
        bindings: tuple[Any, ...],
        stack: list[_Frame],
    ) -> tuple[Any, _Frontier]:
        value = self._cache.get(ck, MISSING)
        if value is not MISSING:
            return value, self._cached_frontier(ck, value)
        if provider.transient:
            return await self._abuild(provider, bindings, stack, None)
        home = self._home(provider, owner, bindings)
        value = home._cache.get(ck, MISSING)
        if value is MISSING:
            pending = home._building.get(ck)
            if pending is not None:
                value, frontier = await self._await_build(pending, stack)
            else:
                future: asyncio.Future[tuple[Any, _Frontier]]
                future = asyncio.get_running_loop().create_future()
                home._building[ck] = _Build(future, stack)
                try:
                    value, frontier = await home._abuild(provider, bindings, stack, None)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
                        future.exception()  # marked retrieved: only waiters re-raise it
                    raise
                finally:
                    del home._building[ck]
                home._store(ck, value, frontier)
                future.set_result((value, frontier))
        else:
            frontier = home._cached_frontier(ck, value)
        if home is not self:
            self._lend(ck, value, frontier)
        return value, frontier

    async def _await_build(self, pending: _Build, stack: list[_Frame]) -> tuple[Any, _Frontier]:
        """Wait for a singleton another resolution is building, unless that would deadlock.

        The build may be waiting, directly or through other resolutions' builds, for
        the very resolution that would wait for it (`stack`): a circular injection
        met from both ends. That is raised as the cycle, instead of waiting forever.
        """
        waiting = self._tree.waiting
        _check_wait(waiting, pending, stack)
        waiting[id(stack)] = pending
        try:
            return await asyncio.shield(pending.future)
        finally:
            del waiting[id(stack)]

    async def _abuild(
        self,
        provider: Provider,
        bindings: tuple[Any, ...],
        stack: list[_Frame],
        overrides: dict[str, Any] | None,
    ) -> tuple[Any, _Frontier]:
        kind = provider.kind
        if kind is Kind.INSTANCE:
            instance = provider.instance
            return instance, (instance,) if isinstance(instance, ServiceBase) else _EMPTY
        frame = _enter(stack, provider, bindings)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        services: list[ServiceBase] = []
        cache = self._cache
        named = self._tree.named
        for param in provider.plan(bindings):
            frame.param = param
            if overrides is not None and param.name in overrides:
                value = overrides[param.name]
                frontier = _EMPTY
            elif param.const is not MISSING:
                value, frontier = param.const, _EMPTY
            elif param.default is MISSING and param.key not in named:
                value = cache.get(param.key, MISSING)
                if value is MISSING:
                    value, frontier = await self._aparam(param, stack)
                else:
                    frontier = self._frontier.get(param.key, _EMPTY)
            else:
                value, frontier = await self._aparam(param, stack)
                if value is MISSING:
                    continue
            if isinstance(value, ServiceBase):
                services.append(value)
            elif frontier:
                services.extend(frontier)
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        stack.pop()
        factory = provider.factory
        assert factory is not None
        try:
            if kind is Kind.CALL:
                instance = factory(*args, **kwargs)
            elif kind is Kind.ASYNC:
                instance = await factory(*args, **kwargs)
            elif kind is Kind.GENERATOR:
                generator = factory(*args, **kwargs)
                instance = next(generator)
                self._finalizers.append((provider.label, _closer(generator)))
            else:
                agenerator = factory(*args, **kwargs)
                instance = await anext(agenerator)
                self._finalizers.append((provider.label, _acloser(agenerator)))
        except Exception as exc:
            _note_building(exc, stack, provider)
            raise
        return self._wire(instance, services)

    async def _aparam(self, param: Param, stack: list[_Frame]) -> tuple[Any, _Frontier]:
        if param.key is Container:
            return self, _EMPTY
        if param.key in self._tree.named:
            provider, owner, bindings = self._find(
                param.key, param.name, explicit_only=True, stack=None
            )
            if provider is not MISSING:
                return await self._aobtain(param.named_key, provider, owner, bindings, stack)
        provider, owner, bindings = self._find(
            param.key, None, explicit_only=param.default is not MISSING, stack=None
        )
        if provider is MISSING:
            if param.default is not MISSING:
                return MISSING, _EMPTY
            if param.optional:
                return None, _EMPTY
            raise _missing(stack, param.key, None)
        return await self._aobtain(param.key, provider, owner, bindings, stack)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _wire(instance: Any, services: list[ServiceBase]) -> tuple[Any, _Frontier]:
        if isinstance(instance, ServiceBase):
            if services:
                add_implicit_dependencies(instance, services)
            return instance, (instance,)
        if not services:
            return instance, _EMPTY
        return instance, tuple(dict.fromkeys(services))

    def _cached_frontier(self, ck: Any, value: Any) -> _Frontier:
        """The services a cached value brings along: itself, if it is one (not stored)."""
        if isinstance(value, ServiceBase):
            return (value,)
        return self._frontier.get(ck, _EMPTY)

    def _store(self, ck: Any, value: Any, frontier: _Frontier) -> None:
        self._cache[ck] = value
        if frontier and not isinstance(value, ServiceBase):
            self._frontier[ck] = frontier

    def _lend(self, ck: Any, value: Any, frontier: _Frontier) -> None:
        self._lent.add(ck)
        self._store(ck, value, frontier)

    # ----------------------------------------------------------------- scopes

    def scope(self) -> Container:
        """A child scope of the current one: enter it with `async with`.

        Inside the block, this container (and any code holding it) resolves in the
        scope, through a context variable: concurrent tasks each see their own scope.
        The scope sees everything its parent provides and may override it with
        `add`/`register`; singletons that depend on an override are built in the
        scope. Leaving the block runs the cleanups of what the scope created, in
        reverse order:

        ```python
        async with container.scope() as scope:
            scope.add(request)
            handler = await container.aget(Handler)  # Handler(request: Request, db: Db)
        ```
        """
        child = Container.__new__(Container)
        child._setup(self._current())
        return child

    def _enter_context(self) -> None:
        parent = self._parent
        if parent is not None and self not in parent._children:
            parent._children.append(self)
        self._tokens.append(self._tree.var.set(self))

    def _leave_context(self) -> None:
        if self._tokens:
            self._tree.var.reset(self._tokens.pop())
        parent = self._parent
        if parent is not None and not self._tokens and self in parent._children:
            parent._children.remove(self)

    async def __aenter__(self) -> Self:
        self._enter_context()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._leave_context()
        await self.aclose()

    def __enter__(self) -> Self:
        self._enter_context()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._leave_context()
        self.close()

    async def aclose(self) -> None:
        """Run the cleanups of everything this container created, last created first.

        Every cleanup runs even if one raises; the first error is raised afterwards
        with the others attached as notes. The cached instances are forgotten, so the
        container can build afresh.
        """
        errors: list[BaseException] = []
        while self._finalizers:
            label, finalizer = self._finalizers.pop()
            try:
                result = finalizer()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                exc.add_note(f"tether: raised while disposing {label}")
                errors.append(exc)
        self._forget()
        _raise_first(errors)

    def close(self) -> None:
        """Like `aclose`, for containers whose cleanups are all synchronous.

        Raises [`TetherError`][tether.TetherError] before running anything if an async
        generator's cleanup is pending.
        """
        for label, finalizer in self._finalizers:
            if getattr(finalizer, "is_async", False):
                raise TetherError(
                    f"The container holds {label}, made by an async generator; close it "
                    f"with `await container.aclose()` or `async with container:`."
                )
        errors: list[BaseException] = []
        while self._finalizers:
            label, finalizer = self._finalizers.pop()
            try:
                finalizer()
            except Exception as exc:
                exc.add_note(f"tether: raised while disposing {label}")
                errors.append(exc)
        self._forget()
        _raise_first(errors)

    def _forget(self) -> None:
        keep = {
            key: provider.instance
            for key, provider in self._providers.items()
            if provider.kind is Kind.INSTANCE
        }
        self._cache.clear()
        self._cache.update(keep)
        self._frontier.clear()
        self._lent.clear()
        self._recipes.clear()

    # -------------------------------------------------------------- lifecycle

    @overload
    def started(
        self, key: type[T], name: str | None = None, /, **overrides: Any
    ) -> contextlib.AbstractAsyncContextManager[T]: ...
    @overload
    def started(
        self, key: Any, name: str | None = None, /, **overrides: Any
    ) -> contextlib.AbstractAsyncContextManager[Any]: ...
    def started(
        self, key: Any, name: str | None = None, /, **overrides: Any
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        """Resolve `key`, start exactly the services it needs, stop them on leaving.

        For one-off scripts, tests and REPLs: the same components the application
        uses, and nothing else:

        ```python
        async with container.started(Database) as db:
            await db.execute("vacuum")
        ```

        If `key` is a service, it is started with its graph; otherwise the services it
        was built from are. Services another root already runs are shared, not
        restarted, and stay running afterwards (reference counting).
        """
        return self._started(key, name, overrides)

    @contextlib.asynccontextmanager
    async def _started(
        self, key: Any, name: str | None, overrides: dict[str, Any]
    ) -> AsyncIterator[Any]:
        scope = self._current()
        value, frontier = await scope._atop(key, name, overrides or None)
        # A service another start brought up already but has not finished (this block
        # runs inside a hook of it: an ASGI lifespan in a server's start) is shared: the
        # engine does not wait for that start.
        async with Uses(type_label(key), frontier):
            yield value

    def root(self, target: Any, /) -> ServiceBase:
        """Resolve `target` into the service to run as the root of an application.

        `target` is a type (often a service class), a function whose parameters are
        injected, or a service instance (returned as it is). A resolved service comes
        back with its injected services wired as dependencies; anything else comes back
        wrapped in a root service that depends on the services it was built from. This
        is what `tether run module:Api` calls; it uses sync providers only (build
        async resources in a service's `start`):

        ```python
        tether.run(container.root(Api))
        ```
        """
        scope = self._current()
        if isinstance(target, ServiceBase):
            return target
        if isinstance(target, type) or typing.get_origin(target) is not None:
            value, frontier = scope._top(target, None, None)
            label = type_label(target)
        elif callable(target):
            provider = Provider.of_callable(target, provides=object, transient=True)
            value, frontier = scope._build(provider, (), [], None)
            label = provider.label
        else:
            raise InjectionError(
                f"Cannot make a root of {target!r} ({type(target).__name__}): give a "
                f"class, a registered type, or a function whose parameters can be injected."
            )
        if isinstance(value, ServiceBase):
            return value
        return Uses(label, frontier)

    @overload
    async def call(
        self, function: Callable[..., Coroutine[Any, Any, T]], /, **kwargs: Any
    ) -> T: ...
    @overload
    async def call(self, function: Callable[..., T], /, **kwargs: Any) -> T: ...
    async def call(self, function: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Call `function` with its parameters injected, awaiting it if it is async.

        buvar's `di.nject` for a function: keyword arguments fill parameters by name,
        the rest are resolved as for `aget`. The result is not cached.
        """
        found = await self._current()._call(function, kwargs)
        return found[0]

    async def _call(
        self, function: Callable[..., Any], overrides: dict[str, Any]
    ) -> tuple[Any, _Frontier]:
        calls = self._tree.calls
        provider = calls.get(function) if isinstance(function, type) else None
        if provider is None:
            provider = Provider.of_callable(function, provides=object, transient=True)
            if provider.kind is Kind.GENERATOR or provider.kind is Kind.ASYNC_GENERATOR:
                provider.kind = Kind.CALL  # the caller consumes what it yields
            if isinstance(function, type):
                if len(calls) >= _CALLS_KEPT:
                    calls.clear()
                calls[function] = provider
        _check_overrides(provider, (), overrides)
        return await self._abuild(provider, (), [], overrides or None)

    def __repr__(self) -> str:
        kind = "scope" if self._parent is not None else "Container"
        return (
            f"<{kind} providers={len(self._providers)} cached={len(self._cache)} "
            f"cleanups={len(self._finalizers)}>"
        )


class Uses(Service):
    """The root of a graph made of what a resolved value needs (`Container.started`)."""

    def __init__(self, label: str, services: _Frontier) -> None:
        self.name = label
        self._services = list(services)

    @property
    def dependencies(self) -> list[list[ServiceBase]]:
        return [self._services] if self._services else []


# -------------------------------------------------------------------- helpers


def _cache_key(key: Any, name: str | None) -> Any:
    return key if name is None else (key, name)


def _bind(provider: Provider, key: Any) -> tuple[Any, ...] | None:
    """The type arguments of `key` bound to `provider`'s type variables, or None."""
    requested = typing.get_args(key)
    template = provider.provides
    template_args = typing.get_args(template) if typing.get_origin(template) else provider.generic
    if len(requested) != len(template_args):
        return None
    bound: dict[Any, Any] = {}
    for want, have in zip(template_args, requested, strict=True):
        if isinstance(want, TypeVar):
            if bound.setdefault(want, have) != have:
                return None
        elif want != have:
            return None
    return tuple(bound.get(var, var) for var in provider.generic)


def _check_overrides(
    provider: Provider, bindings: tuple[Any, ...], overrides: dict[str, Any]
) -> None:
    if not overrides:
        return
    if provider.kind is Kind.INSTANCE:
        raise InjectionError(
            f"{key_label(_cache_key(provider.provides, provider.name))} is registered as an "
            f"instance; there are no parameters to "
            f"override with {', '.join(overrides)}."
        )
    names = {param.name for param in provider.plan(bindings)}
    unknown = [name for name in overrides if name not in names]
    if unknown:
        listed = ", ".join(sorted(names)) or "none"
        raise InjectionError(
            f"{provider.label} has no parameter {', '.join(map(repr, unknown))} to "
            f"override; its parameters: {listed}."
        )


def _enter(stack: list[_Frame], provider: Provider, bindings: tuple[Any, ...]) -> _Frame:
    for index, frame in enumerate(stack):
        if frame.provider is provider and frame.bindings == bindings:
            raise _cycle(stack[index:], provider, stack)
    frame = _Frame(provider, bindings)
    stack.append(frame)
    return frame


def _check_wait(waiting: dict[int, _Build], pending: _Build, stack: list[_Frame]) -> None:
    """Raise InjectionCycleError if waiting for `pending` from `stack` would never end.

    Follows the waits: `pending`'s resolution may wait for another build, whose
    resolution waits for another... If the walk comes back to `stack`, every one of
    them waits for the next one in a circle: the providers along it inject each other.
    """
    chain = [pending]
    while chain[-1].stack is not stack:
        following = waiting.get(id(chain[-1].stack))
        if following is None or following in chain:
            return
        chain.append(following)
    # `stack` waits for chain[0]; the resolution of each build waits for the next;
    # the last one is `stack`'s own build, which the cycle comes back to.
    frames = stack[chain[-1].depth :]
    for build in chain[:-1]:
        frames = [*frames, *build.stack[build.depth :]]
    raise _cycle(frames, frames[0].provider, stack)


def _cycle(frames: list[_Frame], back: Provider, stack: list[_Frame]) -> InjectionCycleError:
    """The error for providers `frames` that lead back to `back`, the first of them."""
    shown = " -> ".join((*(f.show() for f in frames), type_label(back.provides)))
    return InjectionCycleError(
        f"Circular injection: {shown}. Break the cycle: let one of them take its "
        f"dependency later (a method argument, or resolve it in start()).",
        _chain_steps(stack),
        (*(f.provider.provides for f in frames), back.provides),
    )


def _chain_steps(stack: list[_Frame]) -> tuple[str, ...]:
    return tuple(frame.show() for frame in stack)


def _chain_text(stack: list[_Frame], key: Any) -> str:
    return " -> ".join((*_chain_steps(stack), key_label(key)))


def _missing(stack: list[_Frame], key: Any, name: str | None) -> InjectionError:
    ck = _cache_key(key, name)
    steps = _chain_steps(stack)
    chain = _chain_text(stack, ck)
    label = type_label(key)
    made = label if isinstance(key, type) else f"<a function returning {label}>"
    hint = f"Register one: container.register({made}) or container.add(<a {label}>)"
    if name is None and stack:
        hint += ", or give the parameter a default"
    if isinstance(key, type) and _looks_like_config(key):
        hint += f", or declare {label} a config section with @tether.section('name')"
    return InjectionError(f"{chain}: no provider. {hint}.", (*steps, f"{key_label(ck)}"))


def _looks_like_config(cls: type) -> bool:
    return bool(
        hasattr(cls, "__dataclass_fields__")
        or hasattr(cls, "__attrs_attrs__")
        or hasattr(cls, "__struct_fields__")
        or hasattr(cls, "model_fields")
    )


def _note_building(exc: BaseException, stack: list[_Frame], provider: Provider) -> None:
    steps = [*_chain_steps(stack), f"{provider.label}()"]
    exc.add_note(f"tether: raised while building {' -> '.join(steps)}")


def _section_provider(cls: type) -> Provider:
    from ._config import Config  # noqa: PLC0415  (config is optional until used)

    def load(config: Config) -> Any:
        return config.load(cls)

    load.__annotations__ = {"config": Config, "return": cls}  # evaluated: Config is local

    provider = Provider.of_callable(load, provides=cls)
    provider.label = class_label(cls)
    provider.section = cls
    return provider


def _closer(generator: Iterator[Any]) -> Callable[[], None]:
    def close() -> None:
        try:
            next(generator)
        except StopIteration:
            return
        raise TetherError(f"{generator!r} yielded more than once; a provider yields one value.")

    return close


def _acloser(generator: Any) -> Callable[[], Coroutine[Any, Any, None]]:
    async def close() -> None:
        try:
            await anext(generator)
        except StopAsyncIteration:
            return
        raise TetherError(f"{generator!r} yielded more than once; a provider yields one value.")

    close.is_async = True  # type: ignore[attr-defined]
    return close


def _raise_first(errors: list[BaseException]) -> None:
    if not errors:
        return
    first = errors[0]
    for other in errors[1:]:
        first.add_note(f"tether: also raised while disposing: {other!r}")
    raise first
