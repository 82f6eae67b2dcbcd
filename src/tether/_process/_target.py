"""Finding what `module:attr` names: a service, or a class or factory built by a container.

The command (`tether run module:attr`) and pre-fork (a worker that imports the
application itself) share it, so pre-fork does not import the command.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tether._core._base import ServiceBase
from tether._core._errors import RegistrationError, TetherError

if TYPE_CHECKING:
    from tether._inject._container import Container

__all__ = ["EXAMPLE", "TargetError", "as_service", "find_container", "find_object", "resolve"]

EXAMPLE = "myapp.main:app"


class TargetError(TetherError, LookupError):
    """A `module:attr` that does not lead to a service; the message says why and how."""


def _module_hint(module_name: str) -> str:
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        dotted = module_name.removesuffix(".py").replace(os.sep, ".").replace("/", ".")
        return f" Name the module, not the file: {dotted.strip('.')}:..."
    return ""


def _import(module_name: str, spec: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise TargetError(
                f"No module named {missing!r} (from {spec!r}).{_module_hint(module_name)} "
                f"Check the spelling, that it is installed for {sys.executable}, or that "
                f"you run tether from the directory that contains it (now {Path.cwd()})."
            ) from None
        raise


def _public_names(obj: object) -> list[str]:
    return [name for name in dir(obj) if not name.startswith("_")]


def _services_in(module: object) -> list[str]:
    found = []
    for name in _public_names(module):
        value = getattr(module, name, None)
        is_class = isinstance(value, type) and issubclass(value, ServiceBase)
        if isinstance(value, ServiceBase) or is_class:
            found.append(name)
    return found


def _lookup(module: object, module_name: str, attr_path: str, spec: str) -> object:
    obj = module
    walked = module_name
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            close = difflib.get_close_matches(part, _public_names(obj), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            where = getattr(obj, "__file__", None)
            place = f" ({where})" if where else ""
            services = _services_in(obj) if obj is module else []
            listed = f" Services there: {', '.join(services)}." if services else ""
            raise TargetError(
                f"{walked}{place} has no attribute {part!r} (from {spec!r}).{hint}{listed}"
            ) from None
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    return obj


def _call_without_arguments(func: object, what: str, spec: str) -> object:
    assert callable(func)
    try:
        inspect.signature(func).bind()
    except TypeError as exc:
        raise TargetError(
            f"{spec} is {what} that needs arguments ({exc}); point tether at a service "
            f"instance, or at a function that takes no arguments and returns one."
        ) from None
    except ValueError:
        pass  # no signature to inspect (a builtin): just call it
    return func()


def find_container(module: object, module_name: str, named: str | None = None) -> Container | None:
    """The application's container: the one `named` (`--container`), else the module's.

    `named` is `module:attr`; the module's is its attribute `container`. Either is
    a [`Container`][tether.Container] or a function that takes no arguments and returns one.
    None when the module has no `container` and none was named.
    """
    from tether._inject._container import Container  # noqa: PLC0415 - only when a target needs building

    if named is not None:
        where = f"--container {named}"
        name, sep, attr = named.partition(":")
        if not sep or not name or not attr:
            raise TargetError(
                f"{where}: {named!r} is not of the form module:attr (e.g. "
                f"myapp.main:make_container: the module, a colon, the container or the "
                f"function that builds it).{_module_hint(name or named)}"
            )
        found = _lookup(_import(name, where), name, attr, where)
    else:
        where = f"{module_name}.container"
        found = getattr(module, "container", None)
        if found is None:
            return None
    if callable(found) and not isinstance(found, Container | type):
        try:
            inspect.signature(found).bind()
        except TypeError as exc:
            raise TargetError(
                f"{where} is a function that needs arguments ({exc}); give the container, "
                f"or a function that takes none and returns it."
            ) from None
        found = found()
    if not isinstance(found, Container):
        raise TargetError(
            f"{where} is {found!r} ({type(found).__name__}), which is not a tether.Container "
            f"nor a function returning one; point --container at the container or at the "
            f"function that builds it."
        )
    return found


def _warn_if_defaults_only(
    container: Container, module: object, module_name: str, *, made: bool
) -> None:
    """Say loudly when config sections took their defaults only, with no config source.

    `tether run module:Api` should run with the settings `python module.py` has; a
    container the command could not find gives sections their defaults instead.
    """
    from tether._inject._config import Config, unconfigured_sections  # noqa: PLC0415

    sections = unconfigured_sections(container.get(Config))
    if not sections:
        return
    listed = ", ".join(sections)
    if made:
        factories = _container_factories(module, module_name)
        hint = (
            f"--container {factories[0]}"
            if factories
            else "--container module:function, or define `container` in " + module_name
        )
        text = (
            f"{module_name} defines no `container`, so tether made an empty one: config "
            f"section(s) {listed} loaded from their defaults only, without your config "
            f"files or environment variables. If the application builds its container "
            f"in a function, name it: {hint}."
        )
    else:
        text = (
            f"the container of {module_name} has a Config with no sources: config "
            f"section(s) {listed} loaded from their defaults only. Give it its sources: "
            f"tether.Container(config=tether.Config().add_toml(...).add_env(...))."
        )
    sys.stderr.write(f"tether: warning: {text}\n")


def _container_factories(module: object, module_name: str) -> list[str]:
    """`module:name` of what in `module` looks like it makes the container."""
    from tether._inject._container import Container  # noqa: PLC0415

    found = []
    for name in _public_names(module):
        value = getattr(module, name, None)
        if isinstance(value, Container):
            found.append(f"{module_name}:{name}")
        elif inspect.isfunction(value) and value.__module__ == module_name:
            returns = inspect.get_annotations(value, eval_str=False).get("return")
            if returns is Container or returns in ("Container", "tether.Container"):
                found.append(f"{module_name}:{name}")
    return found


def as_service(obj: object, spec: str, container: Container) -> ServiceBase:
    """Turn what `spec` named into a service: an instance, or built by `container`.

    A service class or a factory function is resolved through the container: its
    parameters are injected by type, and the services injected become dependencies.
    """
    if isinstance(obj, ServiceBase):
        return obj
    if isinstance(obj, type) and not issubclass(obj, ServiceBase):
        raise TargetError(
            f"{spec} is the class {obj.__qualname__}, which is not a tether service; "
            f"subclass tether.Service (or tether.BlockingService)."
        )
    if inspect.iscoroutinefunction(obj):
        raise TargetError(
            f"{spec} is an async function; a factory must be a plain function that "
            f"returns a service (it runs before the event loop exists: open resources "
            f"in start hooks instead)."
        )
    if inspect.ismodule(obj) or not callable(obj):
        raise TargetError(
            f"{spec} is {obj!r} ({type(obj).__name__}), not a service. Point at a service "
            f"instance, a service class, or a function returning a service, e.g. "
            f"{EXAMPLE}."
        )
    from tether._inject._container import Uses  # noqa: PLC0415

    try:
        made = container.root(obj)
    except RegistrationError as exc:  # its own parameters cannot be injected
        raise TargetError(f"{spec}: {exc}") from None
    if isinstance(made, Uses):  # the factory built something that is not a service
        raise TargetError(
            f"{spec} was called as a factory and did not return a service; return a "
            f"tether.Service (or take the services it needs as parameters)."
        )
    return made


def find_object(spec: str) -> object:
    """The object `module:attr` names (`attr` may be dotted), imported as it is.

    Raises `TargetError` when the form is wrong or the module or attribute is not
    found; errors raised while importing the module propagate.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise TargetError(
            f"{spec!r} is not of the form module:attr (the module to import, a colon, "
            f"the name in it).{_module_hint(module_name or spec)}"
        )
    return _lookup(_import(module_name, spec), module_name, attr_path, spec)


def resolve(
    spec: str, overrides: Sequence[str] = (), container: str | None = None
) -> tuple[ServiceBase, Container]:
    """The service `module:attr` names (`attr` may be dotted: `mod:App.create`).

    A service class or factory is built through the application's container: the one
    `container` names (`module:attr`, a container or a function returning one),
    else the module's `container` (the same two kinds), else a new one, with a
    warning on stderr if config sections then load from their defaults only. The `-c
    section.key=value` `overrides` are added to its configuration first. Raises
    `TargetError` when the module or attribute is not found or is not a service;
    errors raised while importing or building propagate.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        hint = _module_hint(module_name or spec)
        raise TargetError(
            f"{spec!r} is not of the form module:attr (e.g. {EXAMPLE}: the module to "
            f"import, a colon, the service, its class, or a factory in it).{hint}"
        )
    module = _import(module_name, spec)
    obj = _lookup(module, module_name, attr_path, spec)
    found = find_container(module, module_name, container)
    made = found is None
    if found is None:
        from tether._inject._container import Container  # noqa: PLC0415

        found = Container()
    if overrides:
        from tether._inject._config import Config  # noqa: PLC0415

        found.get(Config).add_overrides(overrides)
    service = as_service(obj, spec, found)
    _warn_if_defaults_only(found, module, module_name, made=made)
    return service, found
