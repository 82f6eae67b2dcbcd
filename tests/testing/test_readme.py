"""The README's testing example runs as written, as a project of its own."""

from __future__ import annotations

import pytest

from tests.testing.testing_support import readme_example, run, setup


def test_the_readme_testing_example_passes(pytester: pytest.Pytester) -> None:
    """myapp.py, its conftest and its tests from the README: every test passes."""
    setup(pytester, ini="addopts = --strict-markers")
    pytester.makepyfile(myapp=readme_example("myapp.py"))
    pytester.makeconftest(readme_example("conftest.py"))
    pytester.makepyfile(test_myapp=readme_example("test_myapp.py"))
    run(pytester, "-W", "error").assert_outcomes(passed=2)
