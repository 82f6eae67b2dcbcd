"""The `tether` command: `run`, `graph`, `check` and `repl` a `module:attr`.

Installed as a console script and reachable as `python -m tether`. `module:attr`
names a service instance, a service class or a factory function; a class or factory is
built through the application's container, its parameters injected by type: the one
`--container module:attr` names, else the module's `container` (either a
[`Container`][tether.Container] or a function returning one), else a new, empty one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from ._core._base import ServiceBase
from ._core._errors import TetherError
from ._core._graph import check
from ._core._version import __version__
from ._process._blocking import check_blocking_timeout
from ._process._logging import LOG_FORMATS, LOG_LEVELS, make_formatter
from ._process._picture import FORMATS, graph
from ._process._runner import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    LOOPS,
    ExitCode,
    check_timeout,
    loop_factory,
    run,
)
from ._process._target import EXAMPLE, TargetError, resolve

if TYPE_CHECKING:
    from ._inject._container import Container

__all__ = ["main"]


# ------------------------------------------------------------------- the command


class _Parser(argparse.ArgumentParser):
    """argparse with the command's one-line errors: `tether: run: ...`, exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the mistake and where to read more; exit with 2."""
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        _fail(ExitCode.USAGE, f"{where}{message} (see: {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tether",
        description="Run, draw, check or explore a graph of tether services.",
        epilog="exit codes: 0 clean stop, 1 crash while running, 2 usage error, "
        "3 failure during startup (or an invalid graph), 70 forced exit.",
    )

    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    target = _Parser(add_help=False)
    target.add_argument(
        "target",
        metavar="module:attr",
        nargs="?",
        help="a service instance, a service class, or a factory function, e.g. " + EXAMPLE,
    )
    target.add_argument(
        "--container",
        metavar="module:attr",
        help="the application's tether.Container, or a function returning it (default: "
        "the module's `container`, if any), e.g. myapp.main:make_container",
    )
    target.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="run and repl: instead of module:attr, run these plugins (repeatable): "
        "tether.Plugins loads them when it starts, e.g. --plugin myapp.web",
    )
    target.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a configuration value (repeatable), e.g. -c db.pool_size=20",
    )
    running = _Parser(add_help=False)
    running.add_argument(
        "--loop",
        default="auto",
        metavar="LOOP",
        help=f"event loop: {', '.join(LOOPS)} (default auto: uvloop if installed), or "
        "module:attr naming a function or class that returns one, e.g. rloop:new_event_loop",
    )
    running.add_argument(
        "--shutdown-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=(
            f"once stopping begins, exit with code 70 after this long (default "
            f"{DEFAULT_SHUTDOWN_TIMEOUT:g}; with --workers, use --graceful-timeout)"
        ),
    )
    running.add_argument(
        "--blocking-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="report code that keeps the event loop from turning for longer than this: "
        "its stack, its task and service, counted in the live status (default: off)",
    )
    running.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="auto (default): with structlog installed, a colored console on a terminal and "
        "JSON lines only when output is not a terminal; without structlog, plain lines. "
        "plain: one line per record (stdlib); console: structlog's console (needs "
        "structlog); json: one JSON object per line",
    )

    run_cmd = commands.add_parser(
        "run",
        parents=[target, running],
        help="run the graph as this process",
        description="Start the graph, run until SIGINT/SIGTERM (graceful; a second one "
        "forces), SIGHUP reloads (or stops, when no service has a reload hook), SIGUSR1 "
        "prints the live status.",
    )
    run_cmd.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="log threshold (default info)"
    )
    _reload_options(run_cmd)
    _prefork_options(run_cmd)
    graph_cmd = commands.add_parser(
        "graph",
        parents=[target],
        help="draw the dependency graph",
        description="Draw the dependency graph with its ordering groups, without starting "
        "anything.",
    )
    graph_cmd.add_argument(
        "--format", choices=FORMATS, default="text", help="text tree (default), DOT or Mermaid"
    )
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
        "root is bound as `root`, every service by name, and the module's own names. "
        "Leaving stops the graph.",
    )
    repl_cmd.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="log threshold (default warning: the log would cover the prompt)",
    )
    return parser


def _fail(code: ExitCode, message: str) -> NoReturn:
    line = " ".join(message.split())  # one line, whatever the message held
    sys.stderr.write(f"tether: {line}\n")
    raise SystemExit(code)


def _check_running_options(args: argparse.Namespace) -> None:
    """Refuse options `run` and `repl` cannot honour before anything is loaded (code 2)."""
    try:
        loop_factory(args.loop)
        make_formatter(args.log_format, sys.stderr)
        if args.shutdown_timeout is not None:
            check_timeout(args.shutdown_timeout)
        check_blocking_timeout(args.blocking_timeout)
    except (ImportError, ValueError) as exc:
        _fail(ExitCode.USAGE, str(exc))


def _unreadable_graph(spec: str, exc: Exception) -> NoReturn:
    """An exception from the user's code while the graph was read: where, in one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        try:
            shown = os.path.relpath(last.filename)
        except ValueError:
            shown = last.filename
        where = f" (at {shown}:{last.lineno} in {last.name})"
    _fail(
        ExitCode.STARTUP_FAILED,
        f"{spec}: reading the graph raised {type(exc).__name__}: {exc}{where}",
    )


def _load(
    spec: str, overrides: Sequence[str], container: str | None
) -> tuple[ServiceBase, Container]:
    try:
        return resolve(spec, overrides, container)
    except TargetError as exc:
        _fail(ExitCode.USAGE, str(exc))
    except TetherError as exc:  # no provider, bad configuration, ...
        _fail(ExitCode.STARTUP_FAILED, f"{spec}: {exc}")
    except Exception:
        traceback.print_exc()
        _fail(ExitCode.STARTUP_FAILED, f"loading {spec} failed (traceback above).")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tether` command; returns (or raises) the exit code."""
    args = _parser().parse_args(argv)
    # Like `python -m`, find the user's modules in the current directory.
    if os.getcwd() not in sys.path and "" not in sys.path:  # noqa: PTH109
        sys.path.insert(0, os.getcwd())  # noqa: PTH109
    if args.command in ("run", "repl"):
        _check_running_options(args)
    _check_target(args)
    if args.command in ("run", "repl"):
        _check_running_options(args)
    if args.command == "run" and (args.reload or args.reload_dir):
        code = _reload(args, sys.argv[1:] if argv is None else list(argv))
        if code is not None:
            return code
    if args.command == "run" and (args.workers is not None or args.bind):
        _prefork(args)
    if args.plugin:
        from ._inject._plugins import plugin_app  # noqa: PLC0415 - only a plugin app needs it

        plugins = plugin_app(args.plugin, overrides=args.config)
        service: ServiceBase = plugins
        container = plugins.container
    else:
        service, container = _load(args.target, args.config, args.container)
    if args.command in ("graph", "check"):
        try:
            if args.command == "graph":
                text = graph(service, format=args.format)
            else:
                check(service)
                text = f"{args.target}: the graph is valid; nothing was started."
                text = _with_config(text, container)
        except TetherError as exc:
            _fail(ExitCode.STARTUP_FAILED, f"{args.target}: {exc}")
        except Exception as exc:  # raised by the user's code, e.g. a dependencies property
            _unreadable_graph(args.target, exc)
        finally:
            # Building the services may have opened what generator providers yield.
            asyncio.run(container.aclose())
        sys.stdout.write(text + "\n")
        return ExitCode.OK
    return run(
        service,
        loop=args.loop,
        shutdown_timeout=(
            DEFAULT_SHUTDOWN_TIMEOUT if args.shutdown_timeout is None else args.shutdown_timeout
        ),
        log_level=args.log_level,
        log_format=args.log_format,
        repl=vars(sys.modules[args.target.partition(":")[0]]) if args.command == "repl" else False,
        container=container,
        blocking_timeout=args.blocking_timeout,
    )


def _reload_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "reload on code change (development)",
        "With --reload, this process watches the sources and runs the application in a "
        "child process, stopped gracefully and started again after each change of a "
        "Python file; the sockets of --bind and of systemd stay open across restarts. "
        "Needs watchfiles: pip install 'tether[reload]'. Never on by default.",
    )
    group.add_argument(
        "--reload", action="store_true", help="restart the application when a source changes"
    )
    group.add_argument(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory to watch (repeatable; default: the current directory)",
    )


def _reload(args: argparse.Namespace, argv: Sequence[str]) -> int | None:
    """`run --reload`: the reloader's exit code; None in the child a reloader started."""
    from ._prefork._sockets import adopt_handed_over  # noqa: PLC0415 - --reload only

    if not args.reload:
        _fail(ExitCode.USAGE, "run: --reload-dir goes with --reload; add --reload.")
    parent = os.getppid()
    if adopt_handed_over():
        # Started by a reloader: run as usual, on the sockets it handed over (it bound
        # those of --bind), and stop if it dies.
        from ._prefork._worker import die_with_parent  # noqa: PLC0415

        die_with_parent(parent)
        if args.bind:
            args.bind = []
            args.workers = 1 if args.workers is None else args.workers
        return None
    try:
        import watchfiles  # noqa: F401, PLC0415 - only to say it is missing, now
    except ImportError:
        _fail(
            ExitCode.USAGE,
            "run: --reload needs watchfiles: pip install 'tether[reload]' (or run without "
            "--reload).",
        )
    from ._reloader import reload_main  # noqa: PLC0415 - --reload only

    return reload_main(args, argv)


def _prefork_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pre-fork workers",
        "With --workers or --bind, a master binds the sockets and forks the workers; "
        "SIGHUP replaces them one at a time, SIGTTIN/SIGTTOU add/remove one.",
    )
    group.add_argument(
        "--workers", type=int, metavar="N", help="worker processes to fork (default 1)"
    )
    group.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="tcp://HOST:PORT or unix:/path to listen on (repeatable; systemd's sockets "
        "are adopted without it)",
    )
    group.add_argument(
        "--preload",
        action="store_true",
        help="import the application once in the master (a reload then reuses that code)",
    )
    group.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a stopping worker is killed after this long (default %(default)g)",
    )
    group.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a worker whose event loop is silent this long is killed and replaced; "
        "workers send a heartbeat every T/4 (default %(default)g)",
    )
    group.add_argument(
        "--boot-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a worker not ready this long after its fork is killed; at start the master "
        "then stops with code 3, on reload the old workers keep serving (default "
        "%(default)g)",
    )


def _prefork(args: argparse.Namespace) -> NoReturn:
    from ._prefork._master import prefork  # noqa: PLC0415 - only the pre-fork mode needs it

    if args.shutdown_timeout is not None:
        _fail(
            ExitCode.USAGE,
            "--shutdown-timeout is for a single process; with --workers or --bind each "
            "worker's deadline is --graceful-timeout (the master kills a worker that "
            "outlives it): give that instead.",
        )

    app: str | Callable[[], ServiceBase] = args.target
    if args.plugin:
        import functools  # noqa: PLC0415

        from ._inject._plugins import plugin_app  # noqa: PLC0415 - only a plugin app needs it

        app = functools.partial(plugin_app, args.plugin, overrides=args.config)
    try:
        prefork(
            app,
            workers=1 if args.workers is None else args.workers,
            bind=args.bind,
            preload=args.preload,
            graceful_timeout=args.graceful_timeout,
            heartbeat_timeout=args.heartbeat_timeout,
            boot_timeout=args.boot_timeout,
            loop=args.loop,
            log_level=args.log_level,
            log_format=args.log_format,
            container=args.container,
            overrides=args.config,
            blocking_timeout=args.blocking_timeout,
        )
    except (TetherError, ValueError, TypeError, ImportError) as exc:
        _fail(ExitCode.USAGE, str(exc))


def _check_target(args: argparse.Namespace) -> None:
    """Exactly one of module:attr and --plugin (the latter for run and repl only)."""
    if args.plugin and args.target:
        _fail(ExitCode.USAGE, "give module:attr or --plugin, not both.")
    if args.plugin and args.command not in ("run", "repl"):
        _fail(
            ExitCode.USAGE,
            f"--plugin is for run and repl (plugins load when the graph starts); "
            f"`tether {args.command}` needs module:attr.",
        )
    if args.plugin and getattr(args, "container", None) is not None:
        _fail(
            ExitCode.USAGE,
            "--container names the container a module:attr is built through; "
            "--plugin apps make their own (tether.Plugins): give one or the other.",
        )
    if not args.plugin and not args.target:
        _fail(ExitCode.USAGE, f"name what to {args.command}: module:attr, e.g. {EXAMPLE}.")


def _with_config(text: str, container: Container) -> str:
    """Add the effective configuration, each value with its source, if any was loaded."""
    from ._inject._config import Config  # noqa: PLC0415

    rendered = container.get(Config).render()
    if not rendered.strip():
        return text
    return f"{text}\n\nEffective configuration (secrets redacted):\n{rendered}"
