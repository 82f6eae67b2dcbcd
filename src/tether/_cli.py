"""The ``tether`` command: ``run``, ``graph``, ``check`` and ``repl`` a ``module:attr``.

Installed as a console script and reachable as ``python -m tether``. ``module:attr``
names a service instance, a service class (called with no arguments) or a factory
function (called with no arguments, returning a service).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ._errors import TetherError
from ._graph import check
from ._logging import LOG_FORMATS, LOG_LEVELS
from ._picture import FORMATS, graph
from ._runner import DEFAULT_SHUTDOWN_TIMEOUT, LOOPS, ExitCode, run
from ._service import ServiceBase, class_label

__all__ = ["TargetError", "main", "resolve"]

_EXAMPLE = "myapp.main:app"


class TargetError(TetherError, LookupError):
    """A ``module:attr`` that does not lead to a service; the message says why and how."""


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


def as_service(obj: object, spec: str) -> ServiceBase:
    """Turn what ``spec`` named into a service: an instance, a class, or a factory."""
    if isinstance(obj, ServiceBase):
        return obj
    if isinstance(obj, type):
        if not issubclass(obj, ServiceBase):
            raise TargetError(
                f"{spec} is the class {obj.__qualname__}, which is not a tether service; "
                f"subclass tether.Service (or tether.BlockingService)."
            )
        made = _call_without_arguments(obj, f"the service class {class_label(obj)}", spec)
        assert isinstance(made, ServiceBase)
        return made
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
            f"{_EXAMPLE}."
        )
    made = _call_without_arguments(obj, "a function", spec)
    if isinstance(made, ServiceBase):
        return made
    if inspect.iscoroutine(made):
        made.close()
    raise TargetError(
        f"{spec} was called as a factory and returned {made!r} ({type(made).__name__}), "
        f"not a service."
    )


def resolve(spec: str) -> ServiceBase:
    """The service ``module:attr`` names (``attr`` may be dotted: ``mod:App.create``).

    Raises :class:`TargetError` when the module or attribute is not found or is not a
    service; errors raised while importing the module or calling a factory propagate.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        hint = _module_hint(module_name or spec)
        raise TargetError(
            f"{spec!r} is not of the form module:attr (e.g. {_EXAMPLE}: the module to "
            f"import, a colon, the service, its class, or a factory in it).{hint}"
        )
    module = _import(module_name, spec)
    return as_service(_lookup(module, module_name, attr_path, spec), spec)


# ------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether",
        description="Run, draw, check or explore a graph of tether services.",
        epilog="exit codes: 0 clean stop, 1 crash while running, 2 usage error, "
        "3 failure during startup (or an invalid graph), 70 forced exit.",
    )
    from . import __version__  # noqa: PLC0415 - avoids a cycle at import time

    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "target",
        metavar="module:attr",
        help="a service instance, a service class, or a factory function, e.g. " + _EXAMPLE,
    )
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--loop", choices=LOOPS, default="auto", help="event loop (auto: uvloop if installed)"
    )
    running.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help="once stopping begins, exit with code 70 after this long (default %(default)g)",
    )
    running.add_argument("--log-format", choices=LOG_FORMATS, default="auto")

    run_cmd = commands.add_parser(
        "run",
        parents=[target, running],
        help="run the graph as this process",
        description="Start the graph, run until SIGINT/SIGTERM (graceful; a second one "
        "forces), SIGHUP reloads, SIGUSR1 prints the live status.",
    )
    run_cmd.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    graph_cmd = commands.add_parser(
        "graph",
        parents=[target],
        help="draw the dependency graph",
        description="Draw the dependency graph with its ordering groups, without starting "
        "anything.",
    )
    graph_cmd.add_argument("--format", choices=FORMATS, default="text")
    commands.add_parser(
        "check",
        parents=[target],
        help="validate the graph without starting it",
        description="Build and validate the graph (cycles, dependencies that are not "
        "services, hooks of the wrong kind) without starting anything.",
    )
    repl_cmd = commands.add_parser(
        "repl",
        parents=[target, running],
        help="start the graph and open an asyncio REPL",
        description="Start the graph and open an asyncio REPL with top-level await; the "
        "root is bound as `root`, every service by name. Leaving stops the graph.",
    )
    repl_cmd.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    return parser


def _fail(code: ExitCode, message: str) -> NoReturn:
    sys.stderr.write(f"tether: {message}\n")
    raise SystemExit(code)


def _load(spec: str) -> ServiceBase:
    try:
        return resolve(spec)
    except TargetError as exc:
        _fail(ExitCode.USAGE, str(exc))
    except Exception:
        traceback.print_exc()
        _fail(ExitCode.STARTUP_FAILED, f"loading {spec} failed (traceback above).")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tether`` command; returns (or raises) the exit code."""
    args = _parser().parse_args(argv)
    # Like `python -m`, find the user's modules in the current directory.
    if os.getcwd() not in sys.path and "" not in sys.path:  # noqa: PTH109
        sys.path.insert(0, os.getcwd())  # noqa: PTH109
    service = _load(args.target)
    if args.command in ("graph", "check"):
        try:
            if args.command == "graph":
                text = graph(service, format=args.format)
            else:
                check(service)
                text = f"{args.target}: the graph is valid; nothing was started."
        except TetherError as exc:
            _fail(ExitCode.STARTUP_FAILED, f"{args.target}: {exc}")
        sys.stdout.write(text + "\n")
        return ExitCode.OK
    return run(
        service,
        loop=args.loop,
        shutdown_timeout=args.shutdown_timeout,
        log_level=args.log_level,
        log_format=args.log_format,
        repl=args.command == "repl",
    )
