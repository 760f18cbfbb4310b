"""Helpers for tests of strategies and plugins: builders of events and a one-call backtest
(:func:`run_strategy`), which need nothing more than tradeloom, and conformance suites for
plugin authors (``tradeloom.testing.feeds``, ``.executors``, ``.persistence``), which are
pytest test classes and need pytest.
"""

try:
    import pytest
except ImportError:  # the builders and run_strategy work without it
    pass
else:
    # An installed package's asserts are not rewritten by pytest, so a failing conformance
    # check would say only "AssertionError": have them rewritten (shows both sides).
    pytest.register_assert_rewrite(
        "tradeloom.testing.executors",
        "tradeloom.testing.feeds",
        "tradeloom.testing.persistence",
        "tradeloom.testing._support",
    )

from tradeloom.testing.harness import bars, merge, run_strategy, ticks

__all__ = ["bars", "merge", "run_strategy", "ticks"]
