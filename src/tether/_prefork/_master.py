"""`tether.prefork`: run an application in N worker processes behind one master."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from tether._core._base import ServiceBase
from tether._core._errors import TetherError
from tether._process._listen import check_seconds
from tether._process._logging import LOG_FORMATS, LogFormat, configured, make_formatter, parse_level
from tether._process._notify import Notifier

from ._sockets import parse_bind

if TYPE_CHECKING:
    from tether._inject._container import Container
    from tether._process._runner import LoopChoice

__all__ = ["prefork"]

logger = logging.getLogger("tether.prefork")

App = str | ServiceBase | Callable[[], ServiceBase]


_OWNER = "tether.prefork"


def _loader(
    app: App, *, preload: bool, overrides: Iterable[str], container: Container | str | None
) -> Callable[[], tuple[ServiceBase, Container | None]]:
    if isinstance(app, str):
        from tether._process._target import resolve  # noqa: PLC0415 - only an app given by name

        spec, extra = app, list(overrides)
        named = container if isinstance(container, str) else None
        if preload:
            service, built = resolve(spec, extra, named)
            return lambda: (service, built)
        return lambda: resolve(spec, extra, named)
    if isinstance(container, str):
        raise TypeError(
            f"tether.prefork: container={container!r} names a container, which only an app "
            f"given as 'module:attr' is built through; pass the container itself."
        )
    if isinstance(app, ServiceBase):
        return lambda: (app, container)
    if isinstance(app, type) and issubclass(app, ServiceBase):
        cls = app
        return lambda: (cls(), container)
    if callable(app):
        factory = app

        def build() -> tuple[ServiceBase, Container | None]:
            made = factory()
            if not isinstance(made, ServiceBase):
                raise TypeError(
                    f"tether.prefork: the factory {factory!r} returned {made!r} "
                    f"({type(made).__name__}), not a service."
                )
            return made, container

        return build
    raise TypeError(
        f"tether.prefork runs 'module:attr', a service, or a function returning one; got "
        f"{app!r} ({type(app).__name__})."
    )


def prefork(
    app: App,
    *,
    workers: int = 1,
    bind: Iterable[str] = (),
    preload: bool = False,
    graceful_timeout: float = 30.0,
    heartbeat_timeout: float = 30.0,
    boot_timeout: float = 60.0,
    loop: LoopChoice = "auto",
    log_level: str | int = "info",
    log_format: LogFormat = "auto",
    container: Container | str | None = None,
    overrides: Iterable[str] = (),
    blocking_timeout: float | None = None,
) -> NoReturn:
    """Run `app` in `workers` processes sharing the listening sockets; exit with a code.

    The master (this process) binds every `bind` spec (`tcp://HOST:PORT`,
    `unix:/path`) and adopts the sockets systemd passed (socket activation), then
    forks the workers before any event loop or thread exists. Each worker builds the
    application and runs it as [`run`][tether.run] would; its servers find the sockets
    with [`listeners`][tether.listeners] (the servers of `tether.ext` do when given no
    address).

    `app` is `"module:attr"` (as for the `tether` command: imported in each
    worker, so a reload runs new code; `preload=True` imports it once in the master
    instead), a function returning the root service (called in each worker), or a
    service instance (forked as it is). `container` is the container the workers
    release once their graph has stopped; for an app given by name it may be
    `"module:attr"` too, naming the application's container (or a function returning
    it) to build the app through in each worker, as `tether run --container` does.

    Signals go to the master: SIGTERM and SIGINT stop gracefully (new connections are
    refused, each worker drains; what runs `graceful_timeout` seconds later is
    killed), a second one makes the workers stop at once; SIGHUP replaces the workers
    one at a time, stopping an old one only once its replacement is ready (if the new
    code fails to boot the old workers keep serving and the failure is logged);
    SIGTTIN and SIGTTOU add and remove a worker (never fewer than one). A worker that
    dies is respawned (with backoff when it keeps dying); one whose event loop sends no
    heartbeat for `heartbeat_timeout` seconds is killed and replaced; one not ready
    within `boot_timeout` is killed. Workers exit when the master dies. Under
    systemd only the master notifies, `READY=1` once every worker is ready. With
    `blocking_timeout`, each worker runs the blocked-loop detector of
    [`run`][tether.run].

    Exit codes: 0 after a stop, 3 when binding or the first workers failed, 1 when the
    stop reported errors:

    ```python
    if __name__ == "__main__":
        tether.prefork("myapp.main:app", workers=4, bind=["tcp://0.0.0.0:8000"])
    ```
    """
    if type(workers) is not int or workers < 1:
        raise ValueError(f"tether.prefork: workers= must be an integer >= 1, got {workers!r}.")
    if isinstance(bind, str):
        raise TypeError(
            f"tether.prefork: bind= takes a list of specs, got the string {bind!r}; "
            f"write bind=[{bind!r}]."
        )
    specs = list(bind)
    for spec in specs:
        parse_bind(spec)
    graceful = check_seconds(_OWNER, "graceful_timeout", graceful_timeout, positive=True)
    heartbeat = check_seconds(_OWNER, "heartbeat_timeout", heartbeat_timeout, positive=True)
    boot = check_seconds(_OWNER, "boot_timeout", boot_timeout, positive=True)
    parse_level(log_level)
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}.")
    make_formatter(log_format, sys.stderr)  # ImportError now, not in every worker
    from tether._process._runner import loop_factory  # noqa: PLC0415 - when a master runs

    loop_factory(loop)
    from tether._process._blocking import check_blocking_timeout  # noqa: PLC0415 - as above

    blocking = check_blocking_timeout(blocking_timeout)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "tether.prefork() forks and owns the signals: call it in the main thread."
        )
    if threading.active_count() > 1:
        raise RuntimeError(
            f"tether.prefork() must fork before any thread exists, and "
            f"{threading.active_count() - 1} other thread(s) run: start them in the "
            f"workers' services instead."
        )
    from tether._process._pid1 import become_init_when_pid1  # noqa: PLC0415 - a container's PID 1 only

    become_init_when_pid1()
    options: dict[str, Any] = {
        "loop": loop,
        "shutdown_timeout": graceful,
        "log_level": log_level,
        "log_format": log_format,
        "blocking_timeout": blocking,
    }
    code = _run_master(
        app,
        specs,
        options,
        count=workers,
        preload=preload,
        graceful=graceful,
        heartbeat=heartbeat,
        boot=boot,
        container=container,
        overrides=overrides,
    )
    raise SystemExit(code)


def _run_master(
    app: App,
    specs: list[str],
    options: dict[str, Any],
    *,
    count: int,
    preload: bool,
    graceful: float,
    heartbeat: float,
    boot: float,
    container: Container | str | None,
    overrides: Iterable[str],
) -> int:
    # The master's machinery is imported when a master runs: `import tether` stays cheap.
    from ._sockets import BindError, Sockets  # noqa: PLC0415
    from ._worker import service_main  # noqa: PLC0415
    from ._workers import BootError, Workers  # noqa: PLC0415

    with configured(options["log_level"], options["log_format"], processes=True):
        logger.info(
            "master pid %d: %d worker(s)%s", os.getpid(), count, " (preloaded)" if preload else ""
        )
        try:
            load = _loader(app, preload=preload, overrides=overrides, container=container)
        except Exception:
            logger.exception("loading %r in the master failed (preload)", app)
            return 3
        notifier = Notifier.from_environment()
        sockets = Sockets(specs)
        master = Workers(
            sockets,
            service_main(load, options),
            count=count,
            graceful_timeout=graceful,
            heartbeat_timeout=heartbeat,
            boot_timeout=boot,
            notifier=notifier,
        )
        try:
            try:
                master.__enter__()
            except (BindError, BootError) as exc:
                logger.error("%s", exc)  # noqa: TRY400 - the message says it all
                return 3
            except TetherError as exc:
                logger.error("the master failed to start: %s", exc)  # noqa: TRY400
                return 3
            try:
                master.supervise()
            finally:
                try:
                    master.__exit__(None, None, None)
                except Exception:
                    logger.exception("errors while stopping the workers")
                    return 1
        finally:
            if notifier is not None:
                notifier.close()
        logger.info("master stopped")
        return 0
