"""An asyncio REPL over a running graph: top-level `await`, services bound by name.

The console reads input in a thread of its own; every line is compiled there and run
on the event loop (as `python -m asyncio` does), so code typed at the prompt touches
services from the loop's thread, where they live. Leaving the console (Ctrl-D or
`exit()`) stops the graph gracefully. Ctrl-C cancels the command that is running.
"""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import contextvars
import inspect
import re
import sys
import threading
import traceback
import types
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tether._core._base import ServiceBase
from tether._core._records import class_label, display_name

from ._picture import graph_records

__all__ = ["Console", "bindings", "service_names"]

_RESERVED = frozenset({"root", "tether", "asyncio"})
_FILENAME = "<tether repl>"


def _snake(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"\W+", "_", words).strip("_").lower() or "service"


def _base_name(service: ServiceBase) -> str:
    own = service.__dict__.get("name")
    if isinstance(own, str) and own.isidentifier():
        return own
    return _snake(class_label(type(service)))


def bindings(root: ServiceBase, module: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The REPL's names: `root`, each service by its `name` or snake_case class.

    `LineServer` becomes `line_server`; a service with `name = "db"` becomes
    `db`; clashes get `_2`, `_3`. `tether` and `asyncio` are imported. The
    public names of `module` (a module's namespace: the one the application was
    found in) are bound as they are there, and win over the names made for services.
    """
    own = _public(module)
    return {
        "root": root,
        "tether": sys.modules["tether"],  # the public package (loaded: it loaded this)
        "asyncio": asyncio,
        **service_names(root, own),
        **own,
    }


def service_names(root: ServiceBase, taken: Mapping[str, Any]) -> dict[str, ServiceBase]:
    """Each service of `root`'s graph by its `name` or snake_case class, unique.

    A name in `taken` (the module's) is avoided, unless it is bound to that very
    service there.
    """
    names: dict[str, ServiceBase] = {}
    for rec in graph_records(root):
        service = rec.service
        base = _base_name(service)
        name = base
        n = 1
        while taken.get(name) is not service and (
            name in names or name in taken or name in _RESERVED
        ):
            n += 1
            name = f"{base}_{n}"
        names[name] = service
    return names


def _public(module: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        name: value
        for name, value in (module or {}).items()
        if not name.startswith("_") and name not in _RESERVED
    }


class Console(code.InteractiveConsole):
    """An interactive console whose code runs on `loop`, with top-level `await`."""

    def __init__(
        self,
        root: ServiceBase,
        loop: asyncio.AbstractEventLoop,
        module: Mapping[str, Any] | None = None,
    ) -> None:
        self.namespace = bindings(root, module)
        self.services = list(service_names(root, _public(module)))
        """The names made for the services, as the banner lists them (the root's first)."""
        self.module = None if module is None else module.get("__name__")
        super().__init__(self.namespace, filename=_FILENAME)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.loop = loop
        self.context = contextvars.copy_context()
        self.root = root
        self.running: asyncio.Task[Any] | None = None
        self.left = False
        self.thread: threading.Thread | None = None

    def banner(self) -> str:
        """What the console says first: what runs and which names are bound."""
        services = self.services
        module = f"; the names of {self.module} too" if self.module else ""
        return (
            f"tether repl: {len(services)} services running; bound: root, "
            f"{', '.join(services)}{module}.\n"
            "Top-level await works. Ctrl-D or exit() leaves and stops the graph "
            "gracefully."
        )

    def showtraceback(self) -> None:
        """Show the exception from the line typed at the prompt inward, as Python's REPL does.

        The frames that carried the input to the event loop and back (the console's
        thread, `concurrent.futures`, this module) are left out: the traceback begins
        at `<tether repl>`, then the user's own code.
        """
        kind, value, tb = sys.exc_info()
        if kind is None or value is None:
            return
        sys.last_type, sys.last_value, sys.last_traceback = kind, value, tb
        if sys.version_info >= (3, 12):
            sys.last_exc = value
        start = tb
        while start is not None and start.tb_frame.f_code.co_filename != _FILENAME:
            start = start.tb_next
        lines = traceback.format_exception(kind, value, start if start is not None else tb)
        self.write("".join(lines))

    def runcode(self, code: types.CodeType) -> None:
        """Run one compiled input on the loop and wait for it (awaiting if needed)."""
        compiled = code
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            try:
                result = types.FunctionType(compiled, self.namespace)()
            except BaseException as exc:
                future.set_exception(exc)
                return
            if not inspect.iscoroutine(result):
                future.set_result(result)
                return
            self.running = self.loop.create_task(_awaited(result), context=self.context)
            self.running.add_done_callback(lambda task: _copy(task, future))

        self.loop.call_soon_threadsafe(start, context=self.context)
        try:
            future.result()
        except SystemExit:
            raise
        except BaseException:
            self.showtraceback()
        finally:
            self.running = None

    def waiting(self) -> bool:
        """Whether the console's thread still waits for input (it was not left)."""
        return self.thread is not None and self.thread.is_alive() and not self.left

    def interrupt(self) -> bool:
        """SIGINT at the console: cancel the running command; True if it was ours."""
        if self.thread is None or not self.thread.is_alive():
            return False
        task = self.running
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)
        else:
            sys.stderr.write("\nKeyboardInterrupt (Ctrl-D or exit() leaves the REPL)\n")
        return True

    async def run_until_left(
        self, stopped: Coroutine[Any, Any, None], why: Callable[[], str] | None = None
    ) -> bool:
        """Serve the console until it is left (True) or `stopped` finishes (False).

        When the graph stops under the prompt, the console says so on stderr, with
        `why()` (or the crash) as the reason. `stopped` raising (a crash)
        propagates; the console thread is left waiting for input then, and the caller
        ends the process without waiting for it.
        """
        loop = asyncio.get_running_loop()
        left: asyncio.Future[None] = loop.create_future()

        def serve() -> None:
            try:
                self.interact(banner=self.banner(), exitmsg="leaving: stopping the graph")
            except SystemExit:
                pass
            finally:
                self.left = True
                loop.call_soon_threadsafe(_resolve, left)

        self.thread = threading.Thread(target=serve, name="tether-repl", daemon=True)
        self.thread.start()
        waiting = loop.create_task(stopped, name="tether.repl-wait")
        try:
            await asyncio.wait({left, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiting.done():
                waiting.cancel()
                await asyncio.wait({waiting})
        if left.done():
            return True
        name = display_name(self.root)
        error = waiting.exception()
        if error is not None:
            _say(f"tether repl: leaving: {name} crashed: {type(error).__name__}: {error}")
            raise error
        _say(f"tether repl: leaving: {name} stopped ({why() if why else 'a stop was requested'})")
        return False


async def _awaited(coro: Coroutine[Any, Any, Any]) -> Any:
    return await coro


def _copy(task: asyncio.Task[Any], future: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        future.set_exception(KeyboardInterrupt())
        return
    error = task.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())


def _say(text: str) -> None:
    """A line on stderr that starts at the beginning of a line (the prompt may be shown)."""
    sys.stderr.write(f"\n{text}\n")
    sys.stderr.flush()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
