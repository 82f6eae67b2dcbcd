"""The error an integration raises when its framework is not installed: which extra to add."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["needs"]


@contextlib.contextmanager
def needs(module: str, extra: str, *packages: str) -> Iterator[None]:
    """Around the imports of `packages`: a missing one names itself and `tether[extra]`.

    The error stays a `ModuleNotFoundError` whose `name` is the missing package, so
    `pytest.importorskip` and `except ImportError` keep working. A package missing
    inside one of them (a dependency of the framework) is left as Python raised it.
    """
    try:
        yield
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in packages:
            raise
        raise ModuleNotFoundError(
            f"{module} needs {missing}, which is not installed: pip install 'tether[{extra}]'",
            name=missing,
        ) from None
