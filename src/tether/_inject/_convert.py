"""Turning merged config values into typed section classes, with msgspec as the engine.

msgspec converts: its lax mode (`strict=False`) turns strings into numbers, booleans
(`true`/`false`/`1`/`0`), timedeltas (seconds or ISO 8601), datetimes, enums,
UUIDs, decimals and literals, and builds dataclasses, attrs classes and Structs at any
depth, running their validators. tether adds only what msgspec does not read, as a
respelling before msgspec sees the value, guided by the field's declared type:
`yes`/`no`/`on`/`off` for booleans, `10s`/`5m`/`1h30m` durations, and
lists written `a,b,c` or as JSON in an environment variable.

Fields are converted one by one so every problem is reported at once (msgspec stops at
the first). Pydantic models get the same per-field conversion, then validate the result
themselves, so their validators and pydantic-only field types keep working.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._providers import type_label

__all__ = [
    "Field",
    "Secret",
    "convert_field",
    "fields_of",
    "is_secret",
    "is_section_class",
    "require_converter",
]

T = TypeVar("T")


class Secret(Generic[T]):
    """A config value that is never shown: `repr`, logs and `tether check` print `***`.

    Declare a field `password: tether.Secret[str]`; read it with `.reveal()`:

    ```python
    @tether.section("db")
    @dataclass
    class DbConfig:
        url: str
        password: tether.Secret[str]

    connect(config.url, password=config.password.reveal())
    ```
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """The value itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Let pydantic models declare `Secret[...]` fields (tether converts the value)."""
        from pydantic_core import core_schema  # noqa: PLC0415  (only when pydantic asks)

        return core_schema.no_info_plain_validator_function(
            lambda value: value if isinstance(value, Secret) else Secret(value)
        )


class Field:
    """One field of a section class."""

    __slots__ = ("annotation", "name", "required")

    def __init__(self, name: str, annotation: Any, required: bool) -> None:
        self.name = name
        self.annotation = annotation
        self.required = required


def _msgspec(what: str = "config sections") -> Any:
    try:
        import msgspec  # noqa: PLC0415  (optional extra, imported where used)
    except ImportError:
        from tether._core._errors import ConfigError  # noqa: PLC0415

        raise ConfigError(
            f"Loading {what} needs msgspec, which converts config values into typed "
            f"classes (dataclasses included): pip install 'tether[config]'."
        ) from None
    return msgspec


def require_converter(what: str) -> None:
    """Raise ConfigError naming `what` (a section) and the extra if msgspec is missing."""
    _msgspec(what)


def is_pydantic(cls: type) -> bool:
    """Whether `cls` is a pydantic model (without importing pydantic)."""
    return hasattr(cls, "model_fields") and hasattr(cls, "model_validate")


def is_section_class(tp: object) -> bool:
    """A class tether loads field by field: dataclass, attrs class, Struct, pydantic model."""
    return isinstance(tp, type) and bool(
        hasattr(tp, "__dataclass_fields__")  # dataclasses.is_dataclass, without the import
        or hasattr(tp, "__attrs_attrs__")
        or hasattr(tp, "__struct_fields__")
        or is_pydantic(tp)
    )


def fields_of(cls: type) -> list[Field]:
    """The fields of a section class, with their evaluated annotations."""
    if is_pydantic(cls):
        model_fields: dict[str, Any] = cls.model_fields  # type: ignore[attr-defined]
        return [
            Field(name, info.annotation, info.is_required()) for name, info in model_fields.items()
        ]
    msgspec = _msgspec()
    hints = typing.get_type_hints(cls, include_extras=True)
    info = msgspec.inspect.type_info(cls)
    return [Field(f.name, hints.get(f.name, Any), f.required) for f in info.fields]


def unwrap_optional(annotation: Any) -> Any:
    """`X | None` -> `X`; anything else unchanged (Annotated stripped)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None))
    return annotation


def is_secret(annotation: Any) -> bool:
    """Whether a field of this type must be redacted (tether's Secret, pydantic's Secret*)."""
    inner = unwrap_optional(annotation)
    origin = typing.get_origin(inner) or inner
    return origin is Secret or (isinstance(origin, type) and hasattr(origin, "get_secret_value"))


# ------------------------------------------------------------------ respelling

_TRUE = frozenset({"yes", "on", "y"})
_FALSE = frozenset({"no", "off", "n"})
# Patterns, not compiled objects: re compiles and caches them on first use, so
# `import tether` does not pay for them.
_DURATION = r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|us|s|m|h|d|w)\s*)+"
_DURATION_PART = r"(\d+(?:\.\d+)?)\s*(ms|us|s|m|h|d|w)"
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _respell(value: Any, annotation: Any, msgspec: Any) -> Any:
    """Rewrite spellings msgspec does not read into ones it does, by the declared type."""
    inner = unwrap_optional(annotation)
    if (typing.get_origin(inner) or inner) is Secret:
        args = typing.get_args(inner)
        return _respell(value, args[0], msgspec) if args else value
    try:
        info = msgspec.inspect.type_info(inner)
    except (TypeError, ValueError):
        return value
    return _respell_info(value, info, msgspec)


def _respell_info(value: Any, info: Any, msgspec: Any) -> Any:
    inspect = msgspec.inspect
    if isinstance(info, inspect.UnionType):
        for member in info.types:
            if isinstance(member, inspect.NoneType):
                continue
            changed = _respell_info(value, member, msgspec)
            if changed is not value:
                return changed
        return value
    sequence = isinstance(
        info, inspect.ListType | inspect.SetType | inspect.FrozenSetType | inspect.VarTupleType
    )
    if isinstance(value, str):
        text = value.strip()
        if isinstance(info, inspect.BoolType):
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        elif isinstance(info, inspect.TimeDeltaType) and re.fullmatch(_DURATION, text):
            return sum(
                float(number) * _UNIT_SECONDS[unit]
                for number, unit in re.findall(_DURATION_PART, text)
            )
        elif sequence:
            if text.startswith("["):
                decoded = msgspec.json.decode(text)
            else:
                decoded = [part.strip() for part in text.split(",")] if text else []
            return [_respell_info(item, info.item_type, msgspec) for item in decoded]
        elif text.startswith("{") and not isinstance(info, inspect.StrType):
            return msgspec.json.decode(text)
        return value
    if sequence and isinstance(value, list):
        return [_respell_info(item, info.item_type, msgspec) for item in value]
    return value


# ------------------------------------------------------------------ conversion


def _hook(*, pass_unknown: bool) -> Callable[[Any, Any], Any]:
    msgspec = _msgspec()

    def dec_hook(tp: Any, obj: Any) -> Any:
        origin = typing.get_origin(tp) or tp
        if origin is Secret:
            if isinstance(obj, Secret):
                return obj
            args = typing.get_args(tp)
            inner = args[0] if args else Any
            return Secret(msgspec.convert(obj, inner, strict=False, dec_hook=dec_hook))
        if isinstance(origin, type):
            if isinstance(obj, origin):
                return obj
            if is_pydantic(origin):
                return origin.model_validate(obj)  # type: ignore[attr-defined]
            if not pass_unknown:
                return origin(obj)
        return obj

    return dec_hook


def convert_field(value: Any, annotation: Any, *, for_pydantic: bool = False) -> Any:
    """Convert one value to `annotation`; raises msgspec.ValidationError."""
    msgspec = _msgspec()
    value = _respell(value, annotation, msgspec)
    if for_pydantic and _foreign(annotation, msgspec):
        return value  # a pydantic-only type (HttpUrl, SecretStr): the model converts it
    return msgspec.convert(
        value, annotation, strict=False, dec_hook=_hook(pass_unknown=for_pydantic)
    )


def _foreign(annotation: Any, msgspec: Any) -> bool:
    """Whether `annotation` holds a type msgspec cannot build (other than Secret)."""
    inspect = msgspec.inspect
    try:
        pending = [inspect.type_info(annotation)]
    except (TypeError, ValueError):
        return True
    while pending:
        info = pending.pop()
        if isinstance(info, inspect.CustomType):
            if (typing.get_origin(info.cls) or info.cls) is not Secret:
                return True
            continue
        for attribute in ("item_type", "key_type", "value_type"):
            inner = getattr(info, attribute, None)
            if inner is not None:
                pending.append(inner)
        pending.extend(getattr(info, "types", ()) or ())
        pending.extend(getattr(info, "item_types", ()) or ())
    return False


def build(cls: type, values: dict[str, Any]) -> Any:
    """Construct `cls` from converted values, running its own validation."""
    if is_pydantic(cls):
        return cls.model_validate(values)  # type: ignore[attr-defined]
    msgspec = _msgspec()
    return msgspec.convert(values, cls, strict=False, dec_hook=_hook(pass_unknown=False))


def conversion_error_type() -> type[Exception]:
    """The base class of msgspec's errors: validation and JSON decoding failures."""
    error: type[Exception] = _msgspec().MsgspecError
    return error


def describe_error(error: Exception) -> tuple[str, str]:
    """The message of a msgspec error, split into (detail, path suffix such as `[1]`)."""
    text = str(error)
    suffix = ""
    match = re.search(r" - at `\$(.*)`$", text)
    if match:
        suffix = match.group(1)
        text = text[: match.start()]
    return text, suffix


def expected_label(annotation: Any) -> str:
    """The expected type as errors show it."""
    return type_label(annotation)
