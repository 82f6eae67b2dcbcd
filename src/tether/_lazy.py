"""Lazy: a service built by the container when it first starts (mode's ServiceProxy idea).

A module can define its application at import time without building anything: the
proxy holds a factory, and the container builds the real service the first time the
graph is walked to start it (``Container.root``, the same resolution ``tether run
module:Api`` uses). Nothing here creates an event loop, a thread or a resource.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._container import Container, Uses
from ._errors import DefinitionError
from ._service import Service, ServiceBase, class_label

__all__ = ["Lazy"]

T = TypeVar("T", bound=ServiceBase)


class Lazy(Service, Generic[T]):
    """A service built on first start: the application defined at import, made when run.

    ``factory`` is a service class or a function returning a service; it is resolved
    through ``container`` (a new :class:`~tether.Container` if none is given), so its
    parameters are injected by annotation exactly as for ``tether run module:App``.
    The service is built once, the first time the proxy's graph is walked (starting it,
    ``tether.check`` or ``tether.graph``), and is the proxy's only dependency: starting
    the proxy starts it, its crash reaches the proxy's ``wait()``. Creating a Lazy
    creates no event loop, thread, socket or service::

        # app.py: importing it builds nothing
        app = tether.Lazy(App)

        if __name__ == "__main__":
            tether.run(app)
    """

    def __init__(
        self,
        factory: type[T] | Callable[..., T],
        /,
        *,
        container: Container | None = None,
        name: str | None = None,
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
        self._factory = factory
        self._container = container
        self._target: T | None = None
        self._lock = threading.Lock()
        self.name = name or getattr(factory, "__qualname__", None) or repr(factory)

    @property
    def built(self) -> bool:
        """Whether the service has been built yet."""
        return self._target is not None

    @property
    def target(self) -> T:
        """The service, built through the container now if it has not been yet.

        Raises :class:`~tether.DefinitionError` if the factory returned something other
        than a service, and whatever the container raises if it cannot build it.
        """
        target = self._target
        if target is not None:
            return target
        with self._lock:  # built once, even if two threads ask at the same time
            if self._target is None:
                self._target = self._build()
            return self._target

    def _build(self) -> T:
        container = self._container if self._container is not None else Container()
        built: ServiceBase = container.root(self._factory)
        if isinstance(built, Uses):
            raise DefinitionError(
                f"Lazy({self.name}) built something that is not a service; the factory "
                f"must be a service class or return a service."
            )
        return built  # type: ignore[return-value]  # what the factory was declared to make

    @property
    def dependencies(self) -> list[ServiceBase]:
        """The built service (built now, on the first walk of the graph)."""
        return [self.target]
