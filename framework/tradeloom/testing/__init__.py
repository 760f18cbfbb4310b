"""Helpers for plugin authors' tests (conformance suites, builders).

Modules here import pytest; they are meant to be used from test code only.
"""

import pytest

# An installed package's asserts are not rewritten by pytest, so a failing conformance check
# would say only "AssertionError": have them rewritten (shows both sides) when pytest runs.
pytest.register_assert_rewrite(
    "tradeloom.testing.executors",
    "tradeloom.testing.feeds",
    "tradeloom.testing.persistence",
    "tradeloom.testing._support",
)

from tradeloom.testing.harness import bars, merge, run_strategy, ticks  # noqa: E402

__all__ = ["bars", "merge", "run_strategy", "ticks"]
