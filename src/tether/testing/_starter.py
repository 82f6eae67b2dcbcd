"""Starting graphs for a test and stopping them after it: the value of `tether_start`."""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar, overload

from tether._core._base import ServiceBase
from tether._core._records import display_name
from tether._core._service import Service
from tether._inject._container import Container, Uses
from tether._inject._providers import type_label

__all__ = ["Starter"]

T = TypeVar("T")
S = TypeVar("S", bound=ServiceBase)


class Starter:
    """Starts graphs for one test and stops them after it, last started first.

    The value of the `tether_start` fixture. Await it with a type to resolve that type
    in the test's scope (`tether_scope`: config, overrides and plugins of the test
    applied) and start exactly the services it needs, or with a service to start that
    service's graph; it returns what was started:

    ```python
    async def test_lists_users(tether_start: tether.testing.Starter) -> None:
        api = await tether_start(Api)          # Database, then Api
        assert await api.users() == []
    ```

    An exception raised while starting propagates as the engine raised it (a failed
    start has already stopped what it brought up), with a note naming the test; in a
    fixture, pytest reports it as an error of the test's setup. After the test, every
    graph is stopped; a stop hook that fails, or a background task that crashed during
    the test, is reported as an error of the test's teardown.
    """

    def __init__(self, container: Container, test: str = "the test") -> None:
        self._container = container
        self._test = test
        self._stack = contextlib.AsyncExitStack()
        self._started: list[str] = []

    @overload
    async def __call__(
        self, target: type[T], name: str | None = None, /, **overrides: Any
    ) -> T: ...
    @overload
    async def __call__(self, target: S, /) -> S: ...
    async def __call__(self, target: Any, name: str | None = None, /, **overrides: Any) -> Any:
        """Start `target` (a type to resolve, or a service) and return what was started.

        `name` and keyword `overrides` are passed to the container's resolution
        (`Container.started`) and only apply to a type.
        """
        manager: contextlib.AbstractAsyncContextManager[Any]
        if isinstance(target, ServiceBase):
            if name is not None or overrides:
                raise TypeError(
                    f"tether_start({display_name(target)}, ...) got a service instance; a "
                    f"name or overrides only apply when resolving a type, as in "
                    f"tether_start({type(target).__name__}, ...)."
                )
            label = display_name(target)
            manager = target if isinstance(target, Service) else Uses(label, (target,))
        else:
            label = type_label(target)
            manager = self._container.started(target, name, **overrides)
        try:
            value = await self._stack.enter_async_context(manager)
        except Exception as exc:
            exc.add_note(f"tether.testing: raised while starting {label} for {self._test}")
            raise
        self._started.append(label)
        return target if isinstance(target, ServiceBase) else value

    async def stop(self) -> None:
        """Stop every graph started so far, last started first (done after the test).

        Every graph is stopped even if one raises; the exception then propagates (the
        last raised, with earlier ones chained as its context).
        """
        self._started.clear()
        await self._stack.aclose()

    @property
    def container(self) -> Container:
        """The scope types are resolved in (`tether_scope`)."""
        return self._container

    def __repr__(self) -> str:
        started = ", ".join(self._started) or "nothing"
        return f"<Starter for {self._test}: {started} started>"
