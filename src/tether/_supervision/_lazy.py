"""Lazy: a service built when it first starts (mode's ServiceProxy idea).

A module can define its application at import time without building anything: the
proxy holds a factory (and its arguments, if any), and the real service is built the
first time the graph is walked to start it: called with the arguments, or resolved
through the container (`Container.root`, the same resolution `tether run module:Api`
uses). Nothing here creates an event loop, a thread or a resource.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from tether._core._base import ServiceBase
from tether._core._errors import DefinitionError
from tether._core._records import class_label, display_name
from tether._core._service import Service
from tether._inject._container import Container, Uses

__all__ = ["Lazy"]

T = TypeVar("T", bound=ServiceBase)


class Lazy(Service, Generic[T]):
    """A service built on first start: the application defined at import, made when run.

    `factory` is a service class or a function returning a service. Given no arguments,
    it is resolved through `container` (a new [Container][tether.Container] if none is
    given), so its parameters are injected by annotation exactly as for `tether run
    module:App`. Given positional or keyword arguments (mode's `App(web_port=6066)`),
    it is called with them, without injection. The service is built once, the first
    time the proxy's graph is walked (starting it, `tether.check` or `tether.graph`),
    and is the proxy's only dependency: starting the proxy starts it, its crash
    reaches the proxy's `wait()`. Creating a Lazy creates no event loop, thread,
    socket or service.

    `name` is how logs, errors and pictures show the proxy (`Lazy[name]`); by default
    the factory's name, and once built, the built service's name when the factory is
    a lambda. A factory parameter that is itself called `name` or `container` is
    passed with `functools.partial`.

    ```python
    # app.py: importing it builds nothing
    app = tether.Lazy(App, web_port=6066, name="app")

    if __name__ == "__main__":
        tether.run(app)
    ```
    """

    def __init__(
        self,
        factory: type[T] | Callable[..., T],
        /,
        *args: Any,
        container: Container | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        given: object = factory
        if isinstance(given, ServiceBase):
            raise DefinitionError(
                f"Lazy() takes a class or a factory to build the service from, got the "
                f"service {given!r} itself, built already; use it directly, or pass its "
                f"class: Lazy({class_label(type(given))})."
            )
        if not callable(given):
            raise DefinitionError(
                f"Lazy() takes a service class or a function that returns a service, got "
                f"{given!r} ({type(given).__name__})."
            )
        if (args or kwargs) and container is not None:
            raise DefinitionError(
                f"Lazy({_factory_label(factory)}) was given arguments and a container: "
                f"with arguments the factory is called with them, not resolved through "
                f"the container. Give one or the other."
            )
        self._factory = factory
        self._args = args
        self._kwargs = kwargs
        self._container = container
        self._target: T | None = None
        self._lock = threading.Lock()
        self._named = name is not None
        self.name = name if name is not None else _factory_label(factory)

    @property
    def built(self) -> bool:
        """Whether the service has been built yet."""
        return self._target is not None

    @property
    def target(self) -> T:
        """The service, built now if it has not been yet.

        Raises [DefinitionError][tether.DefinitionError] if the factory returned
        something other than a service, and whatever the factory or the container
        raises if it cannot build it.
        """
        target = self._target
        if target is not None:
            return target
        with self._lock:  # built once, even if two threads ask at the same time
            if self._target is None:
                self._target = self._build()
            return self._target

    def _build(self) -> T:
        built: object
        if self._args or self._kwargs:
            built = self._factory(*self._args, **self._kwargs)
        else:
            container = self._container if self._container is not None else Container()
            built = container.root(self._factory)
        if isinstance(built, Uses) or not isinstance(built, ServiceBase):
            raise DefinitionError(
                f"Lazy[{self.name}] built {built!r} ({type(built).__name__}), which is not "
                f"a service; the factory must be a service class or return a service."
            )
        if not self._named and _is_lambda(self._factory):
            self.name = display_name(built)
        return built  # type: ignore[return-value]  # what the factory was declared to make

    @property
    def dependencies(self) -> list[ServiceBase]:
        """The built service (built now, on the first walk of the graph)."""
        return [self.target]


def _is_lambda(factory: object) -> bool:
    return getattr(factory, "__name__", None) == "<lambda>"


def _factory_label(factory: object) -> str:
    """How a factory is named before it built anything: a lambda by where it is defined."""
    if _is_lambda(factory):
        code = getattr(factory, "__code__", None)
        if code is not None:
            return f"lambda at {Path(code.co_filename).name}:{code.co_firstlineno}"
    label = getattr(factory, "__qualname__", None)
    if isinstance(label, str):
        return label.rsplit("<locals>.", 1)[-1]
    return repr(factory)
