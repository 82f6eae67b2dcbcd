"""`get` and `aget` agree: the container's two resolution paths build the same things.

The container writes its sync path and its async path out twice, for speed (see
`_container.py`). This property test holds them to one behaviour: random graphs of
classes (plain objects and services, singletons, transients and implicit services,
parameters that are required, optional, defaulted or named) are resolved with both, in
the container and in a scope overriding one of them, and compared: what each
resolution built, which values are shared, the services each service got as
dependencies, and the error when something cannot be provided.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tether._core._base import record

KINDS = ("plain", "optional", "default", "named")
DEFAULT = object()


@dataclass
class Spec:
    """A graph of classes `C0`... where class `i` takes parameters of classes before it."""

    services: list[bool]
    registrations: list[str]
    """`singleton`, `transient`, or `implicit` (not registered)."""
    params: list[list[tuple[str, int]]]
    named: list[bool]
    """Whether a provider named `special{j}` is registered for class `j`."""
    override: int | None
    """The class the scope overrides with an instance of its own."""


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    size = draw(st.integers(1, 6))
    params = [
        sorted(
            draw(
                st.sets(st.tuples(st.sampled_from(KINDS), st.integers(0, i - 1)), max_size=3)
                if i
                else st.just(set())
            )
        )
        for i in range(size)
    ]
    return Spec(
        services=draw(st.lists(st.booleans(), min_size=size, max_size=size)),
        registrations=draw(
            st.lists(
                st.sampled_from(("singleton", "transient", "implicit")),
                min_size=size,
                max_size=size,
            )
        ),
        params=params,
        named=draw(st.lists(st.booleans(), min_size=size, max_size=size)),
        override=draw(st.none() | st.integers(0, size - 1)),
    )


def classes(spec: Spec) -> list[type]:
    """The classes of `spec`, each keeping what it was given in `got`."""
    namespace: dict[str, Any] = {"tether": tether, "DEFAULT": DEFAULT}
    lines = []
    for i, params in enumerate(spec.params):
        base = "tether.Service" if spec.services[i] else "object"
        written = []
        for kind, j in params:
            written.append(
                {
                    "plain": f"c{j}: C{j}",
                    "optional": f"o{j}: C{j} | None",
                    "default": f"d{j}: C{j} = DEFAULT",
                    "named": f"special{j}: C{j}",
                }[kind]
            )
        names = [text.split(":")[0] for text in written]
        signature = ", ".join(["self", *(["*", *written] if written else [])])
        got = ", ".join(f"{name!r}: {name}" for name in names)
        lines += [
            f"class C{i}({base}):",
            f"    def __init__({signature}) -> None:",
            f"        self.got = {{{got}}}",
        ]
    exec("\n".join(lines), namespace)  # noqa: S102 - the test's own generated classes
    return [namespace[f"C{i}"] for i in range(len(spec.params))]


def container_for(spec: Spec, made: list[type]) -> tether.Container:
    container = tether.Container()
    for i, cls in enumerate(made):
        if spec.registrations[i] != "implicit":
            container.register(cls, transient=spec.registrations[i] == "transient")
        if spec.named[i]:
            container.register(cls, name=f"special{i}")
    return container


class Seen:
    """The values described so far, by identity (kept alive, so no id is reused)."""

    def __init__(self) -> None:
        self.index: dict[int, int] = {}
        self.values: list[object] = []

    def get(self, value: object) -> int | None:
        return self.index.get(id(value))

    def add(self, value: object) -> None:
        self.index[id(value)] = len(self.values)
        self.values.append(value)


def describe(value: object, seen: Seen) -> object:
    """What was built, with shared values shown as the same index."""
    if value is None or value is DEFAULT:
        return repr(value) if value is None else "DEFAULT"
    index = seen.get(value)
    if index is not None:
        return ("same as", index)
    seen.add(value)
    got: dict[str, object] = getattr(value, "got", {})
    args = {name: describe(arg, seen) for name, arg in got.items()}
    implicit = None
    if isinstance(value, tether.ServiceBase):
        implicit = [seen.get(s) for s in record(value).implicit]
    return (type(value).__name__, args, implicit)


def outcome(resolve: Any, cls: type, seen: Seen) -> object:
    try:
        value: object = resolve(cls)
    except tether.TetherError as exc:
        return (type(exc).__name__, str(exc))
    return describe(value, seen)


def sync_run(spec: Spec, made: list[type]) -> list[object]:
    container = container_for(spec, made)
    seen = Seen()
    results = [outcome(container.get, cls, seen) for cls in made * 2]
    with container.scope() as scope:
        if spec.override is not None:
            cls = made[spec.override]
            scope.add(object.__new__(cls), provides=cls)
        results += [outcome(scope.get, cls, seen) for cls in made * 2]
    return results


async def async_run(spec: Spec, made: list[type]) -> list[object]:
    container = container_for(spec, made)
    seen = Seen()
    results = [await async_outcome(container, cls, seen) for cls in made * 2]
    async with container.scope() as scope:
        if spec.override is not None:
            cls = made[spec.override]
            scope.add(object.__new__(cls), provides=cls)
        results += [await async_outcome(scope, cls, seen) for cls in made * 2]
    return results


async def async_outcome(container: tether.Container, cls: type, seen: Seen) -> object:
    try:
        value: object = await container.aget(cls)
    except tether.TetherError as exc:
        return (type(exc).__name__, str(exc))
    return describe(value, seen)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_get_and_aget_build_the_same_graph(spec: Spec) -> None:
    """Both paths build the same values, share the same ones, wire the same services."""
    made = classes(spec)
    expected = sync_run(spec, made)
    assert asyncio.run(async_run(spec, made)) == expected
