"""Providers: what the container knows about one way of making a value.

A provider wraps an instance, a class, a function, an async function, a generator (sync
or async: what follows its `yield` is the cleanup), or a classmethod. Its parameters
are read from its signature and type hints once, lazily, into a plan the resolver
walks without further introspection.
"""

from __future__ import annotations

import enum
import inspect
import sys
import types
import typing
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any, Final, TypeVar

from tether._core._errors import RegistrationError
from tether._core._records import class_label

__all__ = ["MISSING", "Kind", "Param", "Provider", "type_label"]

MISSING: Final[Any] = object()
"""No value: a parameter without default, a cache miss."""


class Kind(enum.Enum):
    """How a provider makes its value."""

    INSTANCE = "instance"
    CALL = "call"
    ASYNC = "async function"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async generator"


_ITERATOR_ORIGINS = (Iterator, Generator, Iterable)
_ASYNC_ITERATOR_ORIGINS = (AsyncIterator, AsyncGenerator, AsyncIterable)


def type_label(tp: object) -> str:
    """How errors show a type: `Database`, `list[int]`, `Repo[User]`, `int | None`."""
    if tp is type(None) or tp is None:
        return "None"
    if isinstance(tp, TypeVar):
        return tp.__name__
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return type_label(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_label(arg) for arg in typing.get_args(tp))
    if origin is not None:
        args = typing.get_args(tp)
        return f"{type_label(origin)}[{', '.join(type_label(arg) for arg in args)}]"
    if isinstance(tp, type):
        return class_label(tp)
    if isinstance(tp, str):
        return tp
    return repr(tp).replace("typing.", "")


def key_label(key: object) -> str:
    """A cache key as users name it: `Database` or `Database (name='replica')`."""
    if type(key) is tuple:
        return f"{type_label(key[0])} (name={key[1]!r})"
    return type_label(key)


class Param:
    """One parameter of a provider, as the resolver needs it."""

    __slots__ = ("const", "default", "key", "label", "name", "named_key", "optional", "positional")

    name: str
    key: Any
    """The type to look up (Optional and Annotated stripped)."""
    named_key: tuple[Any, str]
    """`(type, parameter name)`: a provider registered under the parameter's name wins."""
    default: Any
    optional: bool
    positional: bool
    const: Any
    """The value itself for `type[T]` parameters of a generic provider, else MISSING."""
    label: str

    def __init__(self, name: str, key: Any, default: Any, optional: bool, positional: bool) -> None:
        self.name = name
        self.key = key
        self.named_key = (key, name)
        self.default = default
        self.optional = optional
        self.positional = positional
        self.const = MISSING
        self.label = f"{name}: {type_label(key)}"


class Provider:
    """A registered way of making a value of `provides`."""

    __slots__ = (
        "factory",
        "generic",
        "instance",
        "kind",
        "label",
        "name",
        "owner_class",
        "plans",
        "provides",
        "section",
        "target",
        "transient",
        "where",
    )

    factory: Callable[..., Any] | None
    kind: Kind
    provides: Any
    name: str | None
    transient: bool
    instance: Any
    generic: tuple[TypeVar, ...]
    """The type variables a generic provider binds from the requested type's arguments."""
    label: str
    where: tuple[types.CodeType, int] | None
    """Where it was registered (formatted only when a conflict is reported)."""
    target: Callable[..., Any] | None
    """What the signature is read from (the class for class providers)."""
    owner_class: type | None
    """The class of a classmethod, so its own name resolves in string annotations."""
    plans: dict[tuple[Any, ...], tuple[Param, ...]]
    section: type | None
    """Set on the implicit provider of a config section class."""

    def __init__(self) -> None:
        self.factory = None
        self.target = None
        self.owner_class = None
        self.instance = MISSING
        self.name = None
        self.transient = False
        self.generic = ()
        self.plans = {}
        self.section = None
        self.where = None

    # ------------------------------------------------------------------ creation

    @classmethod
    def of_instance(
        cls,
        instance: Any,
        provides: Any,
        name: str | None,
        where: tuple[types.CodeType, int] | None,
    ) -> Provider:
        """A provider that always returns `instance` (`Container.add`)."""
        self = cls()
        self.kind = Kind.INSTANCE
        self.instance = instance
        self.provides = type(instance) if provides is None else provides
        self.name = name
        self.label = ""  # an instance is never built, so never shown in a chain
        self.where = where
        return self

    @classmethod
    def of_callable(
        cls,
        factory: Callable[..., Any],
        *,
        provides: Any = None,
        name: str | None = None,
        transient: bool = False,
        where: tuple[types.CodeType, int] | None = None,
    ) -> Provider:
        """A provider that calls `factory`; raises RegistrationError if it cannot."""
        self = cls()
        self.factory = factory
        self.target = factory
        self.name = name
        self.transient = transient
        self.where = where
        if isinstance(factory, staticmethod | classmethod):
            raise RegistrationError(
                f"{factory!r} is a {type(factory).__name__} object read from a class body; "
                f"register it through the class: container.register(Owner.method)."
            )
        if isinstance(factory, type):
            self.kind = Kind.CALL
            self.label = class_label(factory)
            params = getattr(factory, "__parameters__", ())
            self.generic = tuple(p for p in params if isinstance(p, TypeVar))
            self.provides = factory if provides is None else provides
            _check_parameters(self)
            return self
        if not callable(factory):
            raise RegistrationError(
                f"Cannot register {factory!r} ({type(factory).__name__}): a provider is a "
                f"class or a function; use container.add(value) to register a value."
            )
        func = inspect.unwrap(factory)
        bound_to = getattr(factory, "__self__", None)
        if inspect.ismethod(factory) and isinstance(bound_to, type):
            self.owner_class = bound_to
        if inspect.isasyncgenfunction(func):
            self.kind = Kind.ASYNC_GENERATOR
        elif inspect.iscoroutinefunction(func):
            self.kind = Kind.ASYNC
        elif inspect.isgeneratorfunction(func):
            self.kind = Kind.GENERATOR
        else:
            self.kind = Kind.CALL
        self.label = getattr(factory, "__qualname__", None) or repr(factory)
        self.label = self.label.rsplit("<locals>.", 1)[-1]
        if provides is None:
            provides = self._returned_type(func)
        self.provides = provides
        origin = typing.get_origin(provides)
        if origin is not None:
            self.generic = tuple(a for a in typing.get_args(provides) if isinstance(a, TypeVar))
        elif isinstance(provides, TypeVar):
            raise RegistrationError(
                f"{self.label} returns the bare type variable {provides.__name__}; tether "
                f"cannot tell which type it provides. Pass provides=... when registering."
            )
        _check_parameters(self)
        return self

    def _returned_type(self, func: Callable[..., Any]) -> Any:
        hints = self.hints(func, only_return=True)
        returned = hints.get("return", MISSING)
        if returned is MISSING or returned is None or returned is type(None):
            raise RegistrationError(
                f"{self.label} has no return annotation, so tether cannot tell what it "
                f"provides. Annotate it (def {getattr(func, '__name__', 'factory')}(...) -> "
                f"Pool) or pass provides=Pool when registering."
            )
        if self.kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR):
            origins = _ITERATOR_ORIGINS if self.kind is Kind.GENERATOR else _ASYNC_ITERATOR_ORIGINS
            if typing.get_origin(returned) in origins:
                return typing.get_args(returned)[0]
            raise RegistrationError(
                f"{self.label} is a {self.kind.value} function annotated -> "
                f"{type_label(returned)}; annotate what it yields, e.g. -> "
                f"{'Iterator' if self.kind is Kind.GENERATOR else 'AsyncIterator'}[Pool]."
            )
        return returned

    def hints(self, func: Any, *, only_return: bool = False) -> dict[str, Any]:
        """Evaluated type hints of `func`; RegistrationError naming what did not resolve."""
        localns: dict[str, Any] = {}
        if self.owner_class is not None:
            localns[self.owner_class.__name__] = self.owner_class
        try:
            if isinstance(func, type):
                hints: dict[str, Any] = {}
                init = vars(func).get("__init__") or getattr(func, "__init__", None)
                if isinstance(init, types.FunctionType):
                    hints.update(typing.get_type_hints(init, localns=localns, include_extras=True))
                return hints
            return typing.get_type_hints(func, localns=localns, include_extras=True)
        except Exception as exc:
            what = "return annotation" if only_return else "annotations"
            raise RegistrationError(
                f"Cannot evaluate the {what} of {self.label}: {exc}. Names used in "
                f"annotations must be importable from the module that defines it "
                f"(a class defined inside a function is not, with "
                f"`from __future__ import annotations`)."
            ) from None

    # -------------------------------------------------------------------- plans

    def plan(self, bindings: tuple[Any, ...]) -> tuple[Param, ...]:
        """The parameters to resolve, with the generic type variables bound to `bindings`."""
        plan = self.plans.get(bindings)
        if plan is None:
            plan = self.plans[bindings] = self._make_plan(bindings)
        return plan

    def _make_plan(self, bindings: tuple[Any, ...]) -> tuple[Param, ...]:
        if self.kind is Kind.INSTANCE:
            return ()
        target = self.target
        assert target is not None
        mapping = dict(zip(self.generic, bindings, strict=False))
        hints = self.hints(target)
        if isinstance(target, type) and hasattr(target, "__struct_fields__"):
            hints = {**typing.get_type_hints(target, include_extras=True), **hints}
        params: list[Param] = []
        for parameter in _signature(self).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            hint = hints.get(parameter.name, MISSING)
            default = parameter.default if parameter.default is not parameter.empty else MISSING
            if hint is MISSING:
                continue  # unannotated with a default (checked at registration): left alone
            hint, optional = _unwrap(hint)
            if mapping:
                hint = _substitute(hint, mapping)
            param = Param(
                parameter.name,
                hint,
                default,
                optional,
                parameter.kind is parameter.POSITIONAL_ONLY,
            )
            if typing.get_origin(hint) is type and mapping:
                (arg,) = typing.get_args(hint)
                if not isinstance(arg, TypeVar):
                    param.const = arg
            params.append(param)
        return tuple(params)

    def describe(self) -> str:
        """The provider and where it was registered, for conflict messages."""
        what = {
            Kind.INSTANCE: "the instance",
            Kind.CALL: "the class" if isinstance(self.factory, type) else "the function",
            Kind.ASYNC: "the async function",
            Kind.GENERATOR: "the generator",
            Kind.ASYNC_GENERATOR: "the async generator",
        }[self.kind]
        shown = repr(self.instance) if self.kind is Kind.INSTANCE else self.label
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if self.where is None:
            return f"{what} {shown}"
        code, line = self.where
        return f"{what} {shown} (registered at {code.co_filename.rsplit('/', 1)[-1]}:{line})"


def _signature(provider: Provider) -> inspect.Signature:
    target = provider.target
    assert target is not None
    try:
        return inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"Cannot read the signature of {provider.label}: {exc}.") from None


def _check_parameters(provider: Provider) -> None:
    """Refuse, at registration, parameters tether could never fill."""
    target = provider.target
    assert target is not None
    if isinstance(target, type) and getattr(target, "__init__", None) is object.__init__:
        return
    for parameter in _signature(provider).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.annotation is parameter.empty and parameter.default is parameter.empty:
            raise RegistrationError(
                f"{provider.label}({parameter.name}) has no type annotation and no default, "
                f"so tether cannot inject it. Annotate it ({parameter.name}: SomeType) or "
                f"give it a default."
            )


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """Strip Annotated and Optional: `Annotated[Foo | None, ...]` -> (Foo, True)."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) == 1 and len(args) == 2:
            return rest[0], True
    return hint, False


def _substitute(hint: Any, mapping: dict[TypeVar, Any]) -> Any:
    if isinstance(hint, TypeVar):
        return mapping.get(hint, hint)
    params = getattr(hint, "__parameters__", ())
    if params and typing.get_origin(hint) is not None:
        return hint[tuple(mapping.get(p, p) for p in params)]
    return hint


_PACKAGE = "tether."


def registration_site() -> tuple[types.CodeType, int] | None:
    """The code and line of the first caller outside tether, for conflict messages."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame = frame.f_back
    return None if frame is None else (frame.f_code, frame.f_lineno)
