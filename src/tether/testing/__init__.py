"""Testing support for tether: a pytest plugin, a virtual clock, and a leak check.

Installed with tether, the plugin loads by itself (the `pytest11` entry point
`tether`; `-p no:tether` turns it off, `-p tether.testing` loads it where plugin
autoloading is disabled). It brings:

* fixtures that put a test in a scope of the application's container and start graphs
  for it: `tether_container` and `tether_config` (override them in a conftest),
  `tether_scope`, `tether_plugins` and `tether_start` (async fixtures, present
  when pytest-asyncio is installed), and `virtual_clock`;
* markers: `tether_config(...)`, `tether_override(Real, Fake)`,
  `tether_plugins("myapp.db", ...)` and `tether_allow_leaks(*kinds)`;
* a leak check that fails a test (an error at its teardown) which leaves a task, a
  thread, a child process or a socket behind. The ini option `tether_leak_check` says
  which tests: `auto` (the default: those that use tether's fixtures or markers; a
  suite that does not use tether runs as if tether were not installed), `true` (every
  test) or `false`; `tether_leak_grace` sets how long things that are already
  finishing are waited for (default 1 second).

The names below are the plugin's Python API: the virtual clock, and the type of the
`tether_start` fixture for annotations.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._clock import VirtualClock, VirtualClockLoop
from ._starter import Starter

if _TYPE_CHECKING:
    import pytest

__all__ = ["Starter", "VirtualClock", "VirtualClockLoop"]

# Public classes say they live here, as users import them.
for _cls in (Starter, VirtualClock, VirtualClockLoop):
    _cls.__module__ = __name__
del _cls


# The hooks pytest calls when it loads this module as a plugin. The plugin itself is
# imported only then: `import tether.testing` does not import pytest.


def pytest_addoption(parser: "pytest.Parser") -> None:
    """Register the ini options of the leak check (called by pytest)."""
    from ._plugin import add_options  # noqa: PLC0415

    add_options(parser)


def pytest_configure(config: "pytest.Config") -> None:
    """Register the markers, the fixtures and the leak check (called by pytest)."""
    from ._plugin import configure  # noqa: PLC0415

    configure(config)
