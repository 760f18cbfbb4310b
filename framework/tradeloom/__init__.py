"""tradeloom: event-driven trading pipelines built from pluggy plugins.

Write strategies by subclassing :class:`Strategy`, register them with :data:`hookimpl`, and
run them with :func:`backtest` (simulated clock) or :func:`run` (live)."""

from __future__ import annotations

import pluggy

from tradeloom.hookspecs import hookspec

hookimpl = pluggy.HookimplMarker("tradeloom")
"""Marker for plugin hook implementations: ``@tradeloom.hookimpl``."""

from tradeloom.api import backtest, make_settings, run  # noqa: E402
from tradeloom.events import (  # noqa: E402
    Bar,
    Cancel,
    Fill,
    HealthReport,
    MarketTick,
    Order,
    OrderType,
    PortfolioSnapshot,
    Rejection,
    Severity,
    Side,
    Signal,
)
from tradeloom.runtime.pipeline import Pipeline  # noqa: E402
from tradeloom.runtime.results import RunResult  # noqa: E402
from tradeloom.settings import Settings, load_settings  # noqa: E402
from tradeloom.strategy import Strategy, StrategyContext  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Bar",
    "Cancel",
    "Fill",
    "HealthReport",
    "MarketTick",
    "Order",
    "OrderType",
    "Pipeline",
    "PortfolioSnapshot",
    "Rejection",
    "RunResult",
    "Settings",
    "Severity",
    "Side",
    "Signal",
    "Strategy",
    "StrategyContext",
    "backtest",
    "hookimpl",
    "hookspec",
    "load_settings",
    "make_settings",
    "run",
]
