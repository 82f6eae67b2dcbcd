"""The virtual clock of the tests, now public as ``tether.testing.VirtualClockLoop``.

Kept for the tests that import it from here: a loop factory taking no arguments whose
clock starts at 1000.0, as it always did.
"""

from __future__ import annotations

from tether.testing import VirtualClockLoop as _PublicLoop


class VirtualClockLoop(_PublicLoop):
    """``tether.testing.VirtualClockLoop`` starting at 1000.0."""

    def __init__(self) -> None:
        super().__init__(start=1000.0)
