"""Helpers for plugin authors' tests (conformance suites, builders).

Modules here import pytest; they are meant to be used from test code only.
"""

from tradeloom.testing.harness import bars, merge, run_strategy, ticks

__all__ = ["bars", "merge", "run_strategy", "ticks"]
