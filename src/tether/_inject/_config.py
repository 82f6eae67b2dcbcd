"""Configuration: sources merged in order, sections loaded into typed classes.

A [`Config`][tether.Config] is a stack of layers (dicts, TOML files, environment variables, `-c`
overrides); a later layer wins. Values keep the name of the layer they came from, so an
error or `render()` says where each one was set. Environment variables are matched
against the fields of the class being loaded (`APP_DB_POOL_SIZE` is `db.pool_size`,
`APP_DB_TLS_CA_FILE` is `db.tls.ca_file`), so names with underscores and nested
sections are never ambiguous. Conversion is msgspec's (see `_convert.py`).
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

from tether._core._errors import ConfigError

from ._convert import (
    Field,
    Secret,
    build,
    conversion_error_type,
    convert_field,
    describe_error,
    expected_label,
    fields_of,
    is_pydantic,
    is_secret,
    is_section_class,
    require_converter,
    unwrap_optional,
)

__all__ = ["Config", "section", "unconfigured_sections"]

T = TypeVar("T")
C = TypeVar("C", bound=type)

_Path = tuple[str, ...]
_SECTION_NAME = r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*"


def section(name: str) -> Callable[[C], C]:
    """Declare a class as the config section `name`; it becomes injectable.

    Works on dataclasses, attrs classes, msgspec Structs and pydantic models. The
    container loads it from its [`Config`][tether.Config] the first time something needs it. A
    dotted name is a nested table (`"app.db"` is `[app.db]`); `""` is the top
    level:

    ```python
    @tether.section("db")
    @dataclass
    class DbConfig:
        url: str
        pool_size: int = 10
        timeout: timedelta = timedelta(seconds=5)   # "10s", "5m", 30, "PT1M"
    ```
    """
    if name and not re.fullmatch(_SECTION_NAME, name):
        raise ConfigError(
            f"Invalid section name {name!r}: use identifiers joined by dots, such as 'db' "
            f"or 'app.db', or '' for the top level."
        )

    def mark(cls: C) -> C:
        if not is_section_class(cls):
            raise ConfigError(
                f"@tether.section({name!r}) needs a dataclass, an attrs class, a msgspec "
                f"Struct or a pydantic model; {cls.__qualname__} is none of these "
                f"(put @tether.section above @dataclass)."
            )
        type.__setattr__(cls, "__tether_section__", name)
        return cls

    return mark


class _Layer:
    """One source: leaf values with their source labels, or an environment snapshot."""

    __slots__ = ("entries", "env_prefix", "environ", "label")

    def __init__(
        self,
        label: str,
        entries: list[tuple[_Path, Any, str]] | None = None,
        *,
        env_prefix: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.label = label
        self.entries = entries or []
        self.env_prefix = env_prefix
        self.environ = environ or {}


class _Loaded:
    """A section as last loaded, for render()."""

    __slots__ = ("cls", "instance", "name", "sources")

    def __init__(self, name: str, cls: type, instance: Any, sources: dict[_Path, str]) -> None:
        self.name = name
        self.cls = cls
        self.instance = instance
        self.sources = sources


def _leaves(
    data: Mapping[str, Any], label: str, prefix: _Path = ()
) -> list[tuple[_Path, Any, str]]:
    out: list[tuple[_Path, Any, str]] = []
    pending: list[tuple[_Path, Mapping[str, Any]]] = [(prefix, data)]
    while pending:
        path, table = pending.pop()
        for key, value in table.items():
            here = (*path, str(key))
            if isinstance(value, Mapping) and value:
                pending.append((here, value))
            else:
                out.append((here, value, label))
    out.sort(key=lambda entry: entry[0])
    return out


class Config:
    """Configuration sources merged in order; sections load from it into typed classes.

    Add layers in order of precedence, lowest first; each `add_*` returns the config,
    so calls chain:

    ```python
    config = (
        tether.Config()
        .add_dict({"db": {"pool_size": 5}}, source="defaults")
        .add_toml("app.toml")
        .add_env("APP")                       # APP_DB_POOL_SIZE=20
        .add_overrides(["db.pool_size=30"])   # tether run -c db.pool_size=30
    )
    db = config.load(DbConfig)
    ```

    A container built with `Container(config=config)` loads `@tether.section`
    classes from it when they are injected. Loading raises [`ConfigError`][tether.ConfigError]
    listing every problem at once, each with its key path, source and expected type.
    """

    __slots__ = ("_layers", "_loaded")

    def __init__(self) -> None:
        self._layers: list[_Layer] = []
        self._loaded: dict[type, _Loaded] = {}

    # ------------------------------------------------------------------ sources

    def add_dict(self, data: Mapping[str, Any], *, source: str = "dict") -> Self:
        """Add a layer from a nested mapping; `source` names it in errors and `render`."""
        self._layers.append(_Layer(source, _leaves(data, source)))
        return self

    def add_toml(self, path: str | os.PathLike[str], *, optional: bool = False) -> Self:
        """Add a layer from a TOML file, read now (tomllib).

        Raises [`ConfigError`][tether.ConfigError] naming the file if it is missing (unless
        `optional`) or not valid TOML (with tomllib's line and column).
        """
        # Imported here: `import tether` must stay cheap for programs without config.
        import tomllib  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        label = os.fspath(path)
        try:
            with Path(path).open("rb") as file:
                data = tomllib.load(file)
        except FileNotFoundError:
            if optional:
                return self
            raise ConfigError(f"{label}: config file not found.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{label}: invalid TOML: {exc}.") from None
        self._layers.append(_Layer(label, _leaves(data, label)))
        return self

    def add_env(self, prefix: str, *, environ: Mapping[str, str] | None = None) -> Self:
        """Add a layer of environment variables named `PREFIX_SECTION_KEY`.

        Names are matched against the fields of the class being loaded: for section
        `db`, field `pool_size` reads `APP_DB_POOL_SIZE`, and a nested section
        class in field `tls` reads `APP_DB_TLS_CA_FILE` for its `ca_file`. Values
        are strings converted to the field's type. `environ` defaults to
        `os.environ`, read now.
        """
        source = os.environ if environ is None else environ
        head = f"{prefix.upper()}_" if prefix else ""
        snapshot = {name: value for name, value in source.items() if name.startswith(head)}
        self._layers.append(_Layer("environment", env_prefix=head, environ=snapshot))
        return self

    def add_overrides(self, items: Iterable[str], *, flag: str = "-c") -> Self:
        """Add a layer of `section.key=value` overrides, as given to `tether run -c`.

        Raises [`ConfigError`][tether.ConfigError] naming every malformed item.
        """
        entries: list[tuple[_Path, Any, str]] = []
        problems: list[str] = []
        for item in items:
            key, sep, value = item.partition("=")
            path = tuple(part.strip() for part in key.split("."))
            if not sep or not all(path):
                problems.append(
                    f"{flag} {item!r}: expected section.key=value, such as {flag} db.port=5432"
                )
                continue
            entries.append((path, value, f"{flag} {key.strip()}"))
        if problems:
            raise _error("Invalid config overrides", problems)
        self._layers.append(_Layer(flag, entries))
        return self

    # ------------------------------------------------------------------ loading

    def load(self, cls: type[T], section: str | None = None) -> T:
        """Load the section of `cls` (or `section`) into a new `cls`.

        Raises [`ConfigError`][tether.ConfigError] listing every problem: missing keys, unknown
        keys, values of the wrong type (each with its source), and the class's own
        validation errors.
        """
        name = section if section is not None else getattr(cls, "__tether_section__", "")
        require_converter(f"the config section {_label(cls)} [{name}]" if name else _label(cls))
        base: _Path = tuple(name.split(".")) if name else ()
        values, sources = self._merge(cls, base)
        problems: list[str] = []
        instance = self._convert(cls, base=base, values=values, sources=sources, problems=problems)
        if problems:
            shown = f"{_label(cls)} [{name}]" if name else _label(cls)
            raise _error(f"Invalid configuration for {shown}", problems)
        self._loaded[cls] = _Loaded(name, cls, instance, sources)
        return typing.cast("T", instance)

    def _merge(self, cls: type, base: _Path) -> tuple[dict[str, Any], dict[_Path, str]]:
        values: dict[str, Any] = {}
        sources: dict[_Path, str] = {}
        env_paths: list[tuple[_Path, str]] | None = None
        depth = len(base)
        for layer in self._layers:
            if layer.env_prefix is not None:
                if env_paths is None:
                    env_paths = _env_paths(cls, base)
                for path, suffix in env_paths:
                    variable = layer.env_prefix + suffix
                    if variable in layer.environ:
                        _put(values, sources, path, layer.environ[variable])
                        sources[path] = f"environment variable {variable}"
                continue
            for path, value, label in layer.entries:
                if path[:depth] == base and len(path) > depth:
                    relative = path[depth:]
                    _put(values, sources, relative, value)
                    sources[relative] = label
        return values, sources

    def _convert(
        self,
        cls: type,
        *,
        base: _Path,
        values: dict[str, Any],
        sources: dict[_Path, str],
        problems: list[str],
        prefix: _Path = (),
    ) -> Any:
        """Convert `values` into `cls` field by field, appending every problem found."""
        error_type = conversion_error_type()
        fields = fields_of(cls)
        known = {field.name for field in fields}
        pydantic = is_pydantic(cls)
        for key, value in values.items():
            # A table that is not a field is another section (`[db.replica]`).
            if key not in known and not isinstance(value, dict) and not _allows_extra(cls):
                path = (*prefix, key)
                problems.append(
                    f"{_dotted(base, path)}: unknown key (from {_source(sources, path)}); "
                    f"{_label(cls)} has {', '.join(sorted(known)) or 'no fields'}"
                )
        converted: dict[str, Any] = {}
        before = len(problems)
        for field in fields:
            path = (*prefix, field.name)
            nested = unwrap_optional(field.annotation)
            present = field.name in values
            raw = values.get(field.name)
            if is_section_class(nested) and (
                isinstance(raw, dict) or (field.required and not present)
            ):
                converted[field.name] = self._convert(
                    nested,
                    base=base,
                    values=raw if isinstance(raw, dict) else {},
                    sources=sources,
                    problems=problems,
                    prefix=path,
                )
                continue
            if not present:
                if field.required:
                    problems.append(_missing(base, path, field, self._env_prefix()))
                continue
            try:
                converted[field.name] = convert_field(raw, field.annotation, for_pydantic=pydantic)
            except error_type as exc:
                problems.append(
                    _wrong(
                        base=base,
                        path=path,
                        annotation=field.annotation,
                        raw=raw,
                        sources=sources,
                        error=exc,
                    )
                )
        if len(problems) > before:
            return None
        try:
            return build(cls, converted)
        except error_type as exc:
            detail, _ = describe_error(exc)
            where = _dotted(base, prefix) or "the top level"
            problems.append(f"{where}: {detail} ({_label(cls)} rejected the values)")
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            problems.extend(_pydantic_problems(exc, base, prefix, sources, cls))
        return None

    def _env_prefix(self) -> str | None:
        for layer in self._layers:
            if layer.env_prefix is not None:
                return layer.env_prefix
        return None

    # ---------------------------------------------------------------- rendering

    def render(self, sections: Iterable[type] | None = None) -> str:
        """The effective configuration as TOML-like text, each value with its source.

        Shows the given section classes (loading them), or every section loaded so far.
        Secret values show as `"***"`; values nobody set say `# default`:

        ```python
        [db]
        url = "postgres://db/app"   # app.toml
        password = "***"            # environment variable APP_DB_PASSWORD
        pool_size = 30              # -c db.pool_size
        ```
        """
        if sections is not None:
            for cls in sections:
                self.load(cls)
            shown = [self._loaded[cls] for cls in sections]
        else:
            shown = list(self._loaded.values())
        blocks: list[str] = []
        for loaded in shown:
            base = tuple(loaded.name.split(".")) if loaded.name else ()
            _render(
                loaded.cls,
                instance=loaded.instance,
                base=base,
                prefix=(),
                sources=loaded.sources,
                blocks=blocks,
            )
        return "\n".join(blocks).rstrip("\n") + "\n" if blocks else ""

    def __repr__(self) -> str:
        layers = ", ".join(layer.label for layer in self._layers) or "no sources"
        return f"<Config {layers}>"


def unconfigured_sections(config: Config) -> list[str]:
    """The sections loaded from their defaults only, from a config with nothing to read.

    Empty when any source other than `-c` overrides was added (a dict, a TOML file,
    environment variables): then a section at its defaults is what its sources say.
    Each section reads `DbConfig [db]`.
    """
    if any(layer.label != "-c" for layer in config._layers):
        return []
    return [
        f"{_label(loaded.cls)} [{loaded.name}]" if loaded.name else _label(loaded.cls)
        for loaded in config._loaded.values()
        if not loaded.sources
    ]


# ----------------------------------------------------------------- helpers


def _label(cls: type) -> str:
    return cls.__qualname__.rsplit("<locals>.", 1)[-1]


def _dotted(base: _Path, path: _Path) -> str:
    return ".".join((*base, *path))


def _put(values: dict[str, Any], sources: dict[_Path, str], path: _Path, value: Any) -> None:
    table = values
    for depth, key in enumerate(path[:-1]):
        inner = table.get(key)
        if not isinstance(inner, dict):
            inner = table[key] = {}
            sources.pop(path[: depth + 1], None)
        table = inner
    previous = table.get(path[-1])
    if isinstance(previous, dict):
        for stale in [p for p in sources if p[: len(path)] == path]:
            del sources[stale]
    table[path[-1]] = value


def _env_paths(cls: type, base: _Path) -> list[tuple[_Path, str]]:
    """Every leaf field path of `cls` with its environment variable suffix."""
    out: list[tuple[_Path, str]] = []
    seen: dict[str, _Path] = {}
    pending: list[tuple[type, _Path]] = [(cls, ())]
    while pending:
        current, prefix = pending.pop()
        for field in fields_of(current):
            path = (*prefix, field.name)
            nested = unwrap_optional(field.annotation)
            if is_section_class(nested):
                pending.append((nested, path))
                continue
            suffix = "_".join((*base, *path)).upper().replace("-", "_").replace(".", "_")
            if suffix in seen:
                raise ConfigError(
                    f"{_dotted(base, seen[suffix])} and {_dotted(base, path)} of "
                    f"{_label(cls)} would both read the environment variable "
                    f"<prefix>_{suffix}; rename one of the fields."
                )
            seen[suffix] = path
            out.append((path, suffix))
    return out


def _source(sources: dict[_Path, str], path: _Path) -> str:
    for length in range(len(path), 0, -1):
        found = sources.get(path[:length])
        if found is not None:
            return found
    below = sorted({label for key, label in sources.items() if key[: len(path)] == path})
    return ", ".join(below) if below else "default"


def _show(value: Any, secret: bool) -> str:
    if secret:
        return "'***'"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _missing(base: _Path, path: _Path, field: Field, env_prefix: str | None) -> str:
    dotted = _dotted(base, path)
    table = ".".join((*base, *path[:-1]))
    places = [f"in a config file under [{table}]" if table else "in a config file"]
    if env_prefix is not None:
        places.append(f"as {env_prefix}{'_'.join((*base, *path)).upper()}")
    places.append(f"with -c {dotted}=...")
    return (
        f"{dotted}: missing; expected {expected_label(field.annotation)}. Set it "
        f"{', '.join(places[:-1])} or {places[-1]}"
    )


def _wrong(
    *,
    base: _Path,
    path: _Path,
    annotation: Any,
    raw: Any,
    sources: dict[_Path, str],
    error: Exception,
) -> str:
    detail, suffix = describe_error(error)
    dotted = _dotted(base, path) + suffix
    line = (
        f"{dotted}: expected {expected_label(annotation)}, got "
        f"{_show(raw, is_secret(annotation))} from {_source(sources, path)}"
    )
    if not detail.startswith("Expected `") or suffix:
        line += f" ({detail})"
    return line


def _pydantic_problems(
    error: ValueError, base: _Path, prefix: _Path, sources: dict[_Path, str], cls: type
) -> list[str]:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return [f"{_dotted(base, prefix) or 'the top level'}: {error}"]
    out: list[str] = []
    for item in errors():
        loc = tuple(str(part) for part in item.get("loc", ()))
        path = (*prefix, *loc)
        out.append(
            f"{_dotted(base, path)}: {item.get('msg', 'invalid')} (from "
            f"{_source(sources, path)}; {_label(cls)} rejected it)"
        )
    return out


def _allows_extra(cls: type) -> bool:
    config = getattr(cls, "model_config", None)
    return isinstance(config, dict) and config.get("extra") == "allow"


def _error(title: str, problems: list[str]) -> ConfigError:
    count = len(problems)
    lines = "\n".join(f"  {problem}" for problem in problems)
    noun = "problem" if count == 1 else "problems"
    return ConfigError(f"{title} ({count} {noun}):\n{lines}", tuple(problems))


def _render(
    cls: type,
    *,
    instance: Any,
    base: _Path,
    prefix: _Path,
    sources: dict[_Path, str],
    blocks: list[str],
) -> None:
    table = ".".join((*base, *prefix))
    rows: list[tuple[str, str]] = []
    nested: list[tuple[type, Any, _Path]] = []
    for field in fields_of(cls):
        value = getattr(instance, field.name, None)
        inner = unwrap_optional(field.annotation)
        path = (*prefix, field.name)
        if is_section_class(inner) and value is not None:
            nested.append((inner, value, path))
            continue
        shown = _literal(value, secret=is_secret(field.annotation))
        rows.append((f"{field.name} = {shown}", _source(sources, path)))
    if table:
        blocks.append(f"[{table}]")
    width = max((len(text) for text, _ in rows), default=0)
    blocks.extend(f"{text.ljust(width)}   # {source}" for text, source in rows)
    blocks.append("")
    for inner_cls, value, path in nested:
        _render(inner_cls, instance=value, base=base, prefix=path, sources=sources, blocks=blocks)


def _literal(value: Any, *, secret: bool) -> str:
    import json  # noqa: PLC0415  (rendering is rare; keep `import tether` cheap)

    if secret or isinstance(value, Secret) or hasattr(value, "get_secret_value"):
        return '"***"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    import datetime as dt  # noqa: PLC0415 - keeps `import tether` cheap

    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        return f'"{seconds:g}s"'
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_literal(item, secret=False) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_literal(v, secret=False)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
