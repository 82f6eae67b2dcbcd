"""The pytest plugin: options, markers, and the leak check that runs around every test.

The check compares what is alive before a test's setup with what is alive after its
teardown. Tasks are looked for on the event loops that fixtures provide (a fixture
whose value is an event loop or an `asyncio.Runner`: pytest-asyncio's loops and
runners of any scope, and `virtual_clock`), just before such a fixture is torn down,
since closing a loop cancels what is left on it without a word. What a fixture of a
wider scope (module, session) creates while it is set up belongs to that fixture, not to
the test that happened to set it up.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from typing import Any

import pytest

from ._clock import VirtualClock
from ._leaks import KINDS, Resources, allowed, current_loop, describe, settle, snapshot

__all__ = ["LeakCheck", "add_options", "configure"]

MARKERS = {
    "tether_allow_leaks": (
        "tether_allow_leaks(*kinds): do not fail this test for leaving tasks, threads, "
        "processes or sockets behind (every kind, or only those named)."
    ),
    "tether_config": (
        "tether_config(mapping=None, /, **values): config values for this test, layered "
        "over the container's config in tether_scope."
    ),
    "tether_override": (
        "tether_override(provides, fake, *, name=None): provide fake for provides in this "
        "test's tether_scope (a class or function is registered as a provider, anything "
        "else added as the instance)."
    ),
    "tether_plugins": (
        "tether_plugins(*plugins): load these plugins (import paths, modules or callables) "
        "into this test's tether_scope, as tether.Plugins.load does."
    ),
}

FIXTURES = frozenset(
    {
        "tether_config",
        "tether_container",
        "tether_plugins",
        "tether_scope",
        "tether_start",
        "virtual_clock",
    }
)
"""The fixtures whose use puts a test under the leak check (in the default `auto`)."""

_DEFAULT_GRACE = 1.0
_STATE = pytest.StashKey["_TestState"]()


def add_options(parser: pytest.Parser) -> None:
    """Register the ini options of the leak check."""
    parser.addini(
        "tether_leak_check",
        "fail a test that leaves a task, thread, child process or socket behind "
        "(tether.testing): auto (default: the tests that use tether's fixtures or "
        "markers), true (every test) or false",
        default="auto",
    )
    parser.addini(
        "tether_leak_grace",
        f"seconds the leak check gives tasks, threads and processes that are already "
        f"finishing (tether.testing; default {_DEFAULT_GRACE})",
        default=str(_DEFAULT_GRACE),
    )


def configure(config: pytest.Config) -> None:
    """Register the markers, the fixtures and the leak check for this session."""
    for text in MARKERS.values():
        config.addinivalue_line("markers", text)
    from . import _fixtures  # noqa: PLC0415  (registered here, once per session)

    config.pluginmanager.register(_fixtures, "tether.testing.fixtures")
    if config.pluginmanager.hasplugin("asyncio"):
        # The graph fixtures are async: they exist when pytest-asyncio runs async code.
        from . import _asyncio  # noqa: PLC0415  (imports pytest_asyncio)

        config.pluginmanager.register(_asyncio, "tether.testing.asyncio")
    scope = _leak_check_scope(config)
    if scope is not None:
        config.pluginmanager.register(LeakCheck(config, every_test=scope), "tether.testing.leaks")


def _leak_check_scope(config: pytest.Config) -> bool | None:
    """The ini option: True for every test, False for tests using tether, None for none."""
    raw = config.getini("tether_leak_check")
    value = str(raw).strip().lower()
    if value == "auto":
        return False
    if value in {"true", "all", "yes", "on", "1"}:
        return True
    if value in {"false", "no", "off", "0"}:
        return None
    raise pytest.UsageError(
        f"tether_leak_check = {raw!r}: expected auto (the tests that use tether's fixtures "
        f"or markers; the default), true (every test) or false (none)."
    )


def uses_tether(item: pytest.Item) -> bool:
    """Whether `item` asks for one of tether's fixtures or carries one of its markers."""
    names = getattr(item, "fixturenames", ())
    if any(name in FIXTURES for name in names):
        return True
    return any(marker.name in MARKERS for marker in item.iter_markers())


class _TestState:
    """What the leak check knows about the test being run."""

    __slots__ = ("before", "found", "kinds")

    def __init__(self, kinds: tuple[str, ...], before: Resources) -> None:
        self.kinds = kinds
        self.before = before
        self.found: dict[str, list[str]] = {}


class LeakCheck:
    """The leak check of one pytest session (pytester runs nested sessions: one each)."""

    def __init__(self, config: pytest.Config, *, every_test: bool = False) -> None:
        self.every_test = every_test
        """Check every test (`tether_leak_check = true`), not only those using tether."""
        self.grace = _grace(config)
        self.loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        """Event loops provided by fixtures and still open: where tasks are looked for."""
        self.exempt: dict[object, Resources] = {}
        """What wider-scoped fixtures created while they were set up, until torn down."""
        self.item: pytest.Item | None = None

    # ------------------------------------------------------------------ hooks

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Any:
        self.item = item
        kinds, _ = self._kinds(item)
        if not (self.every_test or uses_tether(item)):
            kinds = ()  # a test that does not use tether runs as if tether were not installed
        item.stash[_STATE] = _TestState(kinds, snapshot(self._open_loops(), kinds))
        return (yield)

    @pytest.hookimpl(tryfirst=True, specname="pytest_runtest_setup")
    def pytest_runtest_setup_refuse_unknown_kinds(self, item: pytest.Item) -> None:
        # Raised from a plain hook, not the wrapper: the other plugins' setup has begun,
        # so their teardown finds what it expects.
        _, problem = self._kinds(item)
        if problem:
            pytest.fail(problem, pytrace=False)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> Any:
        state = self._state()
        wider = state is not None and bool(state.kinds) and fixturedef.scope != "function"
        before = snapshot(self._open_loops(), state.kinds) if wider and state else None
        value = yield
        loop = _loop_of(value)
        if loop is not None and loop not in self.loops:
            self.loops.add(loop)
            # Runs before the fixture's own teardown (finalizers run last added first),
            # after the teardown of every fixture that depends on it.
            fixturedef.addfinalizer(functools.partial(self._loop_closing, loop))
        if before is not None and state is not None:
            self.exempt[fixturedef] = snapshot(self._open_loops(), state.kinds) - before
        return value

    def pytest_fixture_post_finalizer(self, fixturedef: pytest.FixtureDef[Any]) -> None:
        self.exempt.pop(fixturedef, None)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Any:
        result = yield  # a teardown that raised is reported as it is, without the check
        self.item = None
        state = item.stash.get(_STATE, None)
        if state is not None and state.kinds:
            found = state.found
            for kind, lines in self._leaks(state).items():
                found.setdefault(kind, []).extend(lines)
            if found:
                pytest.fail(_report(item.nodeid, found), pytrace=False)
        return result

    # ---------------------------------------------------------------- helpers

    def _state(self) -> _TestState | None:
        return None if self.item is None else self.item.stash.get(_STATE, None)

    def _open_loops(self) -> list[asyncio.AbstractEventLoop]:
        """The loops fixtures provided that are still open, and the thread's current loop."""
        loops = [loop for loop in self.loops if not loop.is_closed()]
        current = current_loop()
        if current is not None and current not in loops:
            loops.append(current)
        return loops

    def _exempt(self) -> Resources:
        return functools.reduce(Resources.__or__, self.exempt.values(), Resources())

    def _kinds(self, item: pytest.Item) -> tuple[tuple[str, ...], str]:
        """The kinds to check for `item`, and what is wrong with its markers, if anything."""
        allowed_kinds: set[str] = set()
        for marker in item.iter_markers("tether_allow_leaks"):
            unknown = [kind for kind in marker.args if kind not in KINDS]
            if marker.kwargs or unknown:
                shown = (
                    f"unknown kind {', '.join(map(repr, unknown))}"
                    if unknown
                    else f"unexpected keyword {', '.join(marker.kwargs)}=..."
                )
                return (), (
                    f"@pytest.mark.tether_allow_leaks: {shown}. Name kinds among "
                    f"{', '.join(map(repr, KINDS))}, or none to allow every kind."
                )
            if not marker.args:
                return (), ""
            allowed_kinds.update(marker.args)
        return tuple(kind for kind in KINDS if kind not in allowed_kinds), ""

    def _loop_closing(self, loop: asyncio.AbstractEventLoop) -> None:
        """Look for the test's tasks on `loop` before its fixture closes it."""
        self.loops.discard(loop)
        state = self._state()
        if state is None or "tasks" not in state.kinds or loop.is_closed():
            return
        ignored = state.before | self._exempt()
        suspects = Resources(tasks=asyncio.all_tasks(loop)) - ignored
        if not suspects:
            return
        settle(suspects, [loop], time.monotonic() + self.grace)
        left = Resources(tasks=asyncio.all_tasks(loop)) - ignored
        # Described now: closing the loop cancels them, and their frames are gone after.
        for kind, lines in describe(left).items():
            state.found.setdefault(kind, []).extend(lines)

    def _leaks(self, state: _TestState) -> dict[str, list[str]]:
        loops = self._open_loops()
        ignored = state.before | allowed(loops) | self._exempt()
        suspects = snapshot(loops, state.kinds) - ignored
        if not suspects:
            return {}
        settle(suspects, loops, time.monotonic() + self.grace)
        loops = self._open_loops()
        return describe(
            snapshot(loops, state.kinds) - state.before - allowed(loops) - self._exempt()
        )


def _loop_of(value: object) -> asyncio.AbstractEventLoop | None:
    """The event loop a fixture provides, if its value is a loop or an asyncio.Runner."""
    if isinstance(value, asyncio.AbstractEventLoop):
        return value
    if isinstance(value, asyncio.Runner | VirtualClock):
        try:
            return value.get_loop()
        except RuntimeError:  # a runner that is already closed
            return None
    return None


def _grace(config: pytest.Config) -> float:
    raw = config.getini("tether_leak_grace")
    try:
        grace = float(raw)
    except (TypeError, ValueError):
        grace = -1.0
    if grace < 0:
        raise pytest.UsageError(
            f"tether_leak_grace = {raw!r}: expected a number of seconds, such as 0.5."
        )
    return grace


_NOUNS = {
    "tasks": ("task", "tasks"),
    "threads": ("thread", "threads"),
    "processes": ("child process", "child processes"),
    "sockets": ("socket", "sockets"),
}


def _report(nodeid: str, found: dict[str, list[str]]) -> str:
    counts = []
    lines: list[str] = []
    for kind in KINDS:
        entries = found.get(kind)
        if not entries:
            continue
        singular, plural = _NOUNS[kind]
        counts.append(f"{len(entries)} {singular if len(entries) == 1 else plural}")
        lines.extend(f"  - {entry}" for entry in entries)
    kinds = ", ".join(repr(kind) for kind in KINDS if kind in found)
    return "\n".join(
        [
            f"tether: {nodeid} left {_join(counts)} behind after its teardown:",
            *lines,
            (
                "Stop what a test starts before it ends, in the test or in a fixture's "
                "teardown: cancel and await tasks, join threads, wait for child processes, "
                f"close sockets. If this is intended, mark the test "
                f"@pytest.mark.tether_allow_leaks({kinds}); the ini option "
                "tether_leak_check = false turns the check off."
            ),
        ]
    )


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} and {parts[-1]}"
