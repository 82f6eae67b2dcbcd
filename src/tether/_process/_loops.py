"""The event loop a process runs on: by name, or made by a factory of any kind.

`loop="auto"` picks uvloop when it is installed, `"asyncio"` and `"uvloop"` force
one; anything else is a factory: a callable returning an asyncio event loop, or a
string `module:attr` naming one (the command line's form). The runner calls the
factory once the `init` stage has run; a ServiceThread makes its loop with the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal, cast

__all__ = ["LOOPS", "LoopChoice", "LoopFactory", "LoopName", "loop_factory", "wakes_itself"]

LoopName = Literal["auto", "asyncio", "uvloop"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
LoopChoice = LoopName | str | LoopFactory
"""A loop by name, `module:attr` naming a factory, or the factory itself."""
LOOPS: tuple[LoopName, ...] = ("auto", "asyncio", "uvloop")


def loop_factory(choice: LoopChoice) -> LoopFactory | None:
    """The event loop factory for `choice`; None means asyncio's default loop.

    `auto` picks uvloop when it is installed, the standard loop otherwise. A callable
    (`rloop.new_event_loop`, a loop class, a function of your own) or a string
    `module:attr` naming one is a factory: it is called with no argument once the
    `init` stage has run, and must return an asyncio event loop.
    """
    given: object = choice
    if callable(given):
        return _checked(given, _describe_factory(given))
    if isinstance(given, asyncio.AbstractEventLoop):
        raise TypeError(
            f"loop= takes a factory that makes an event loop, got the loop {choice!r}; pass "
            f"its class or a function that creates one (tether creates and closes the loop)."
        )
    if isinstance(given, str) and ":" in given:
        return _checked(_find_factory(given), given)
    if choice not in LOOPS:
        raise ValueError(
            f"loop must be one of {', '.join(LOOPS)}, a module:attr naming a loop factory "
            f"(e.g. rloop:new_event_loop), or a callable returning an event loop; "
            f"got {choice!r}."
        )
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional extra, loaded on use
    except ImportError:
        if choice == "uvloop":
            raise ImportError(
                "loop='uvloop' needs uvloop: pip install 'tether[uvloop]' "
                "(or choose loop='asyncio')."
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def _describe_factory(factory: Callable[..., object]) -> str:
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    return f"{module}:{name}" if module and name else repr(factory)


def _find_factory(spec: str) -> Callable[[], object]:
    """The callable `module:attr` names; ValueError saying why it is not one."""
    from ._target import TargetError, find_object  # noqa: PLC0415 - only for a named factory

    try:
        found = find_object(spec)
    except TargetError as exc:
        raise ValueError(f"loop={spec!r}: {exc}") from None
    except ImportError as exc:
        raise ImportError(f"loop={spec!r}: importing it failed: {exc}") from exc
    if not callable(found):
        raise ValueError(  # noqa: TRY004 - a wrong value of loop=, as the other loop errors
            f"loop={spec!r} names {found!r} ({type(found).__name__}), which is not callable; "
            f"name a function or class that returns an event loop, e.g. rloop:new_event_loop."
        )
    return cast("Callable[[], object]", found)


def _checked(factory: Callable[[], object], shown: str) -> LoopFactory:
    """`factory`, checked to return an event loop when it is called."""

    def make_loop() -> asyncio.AbstractEventLoop:
        loop = factory()
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(
                f"the loop factory {shown} returned {loop!r} ({type(loop).__name__}), not an "
                f"asyncio event loop; loop= takes a callable that creates and returns one."
            )
        return loop

    make_loop.__qualname__ = make_loop.__name__ = f"checked({shown})"
    make_loop.__wrapped__ = factory  # type: ignore[attr-defined]
    return make_loop


def wakes_itself(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop sets its own signal wakeup descriptor when it runs (uvloop does)."""
    return type(loop).__module__.partition(".")[0] == "uvloop"
