"""Run a strategy over a list of events in a test, in a few lines.

.. code-block:: python

    from tradeloom.testing import bars, run_strategy

    def test_buys_on_the_cross():
        result = run_strategy(MyStrategy(), bars("ORCL", ["10", "11", "12", "9"]))
        assert [fill.side for fill in result.fills] == ["buy", "sell"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import uuid6

from tradeloom.api import backtest
from tradeloom.events import Bar, MarketEvent, MarketTick
from tradeloom.runtime.results import RunResult
from tradeloom.settings import merge_tables
from tradeloom.strategy import Strategy

DEFAULT_START = datetime(2024, 1, 2, tzinfo=UTC)


def _exact(value: Decimal | int | str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"float {value!r} is not exact: pass a str, int or Decimal")
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _price(value: Decimal | int | str) -> Decimal:
    price = _exact(value)
    if price <= 0:
        raise ValueError(f"price {value!r} is not positive")
    return price


def bars(
    instrument: str,
    closes: Iterable[Decimal | int | str],
    *,
    start: datetime = DEFAULT_START,
    interval: timedelta = timedelta(days=1),
    opens: Iterable[Decimal | int | str] | None = None,
    volume: Decimal | int | str = 1000,
) -> list[Bar]:
    """Bars with the given closes. Each bar opens at ``opens[i]`` (default: the previous close,
    the first at its own close); high and low span open and close."""
    closes = [_price(c) for c in closes]
    open_prices = (
        [_price(o) for o in opens]
        if opens is not None
        else [closes[i - 1] if i else closes[0] for i in range(len(closes))]
    )
    if len(open_prices) != len(closes):
        raise ValueError("opens and closes must have the same length")
    events = []
    for index, (open_, close) in enumerate(zip(open_prices, closes, strict=True)):
        bar_start = start + index * interval
        events.append(
            Bar(
                event_id=uuid6.uuid7(),
                ts=bar_start + interval,
                instrument=instrument,
                open=open_,
                high=max(open_, close),
                low=min(open_, close),
                close=close,
                volume=_exact(volume),
                start=bar_start,
                end=bar_start + interval,
            )
        )
    return events


def ticks(
    instrument: str,
    prices: Iterable[Decimal | int | str],
    *,
    start: datetime = DEFAULT_START,
    interval: timedelta = timedelta(seconds=1),
) -> list[MarketTick]:
    """Ticks at the given last prices, ``interval`` apart."""
    return [
        MarketTick(
            event_id=uuid6.uuid7(),
            ts=start + index * interval,
            instrument=instrument,
            last_price=_price(price),
        )
        for index, price in enumerate(prices)
    ]


def merge(*streams: Sequence[MarketEvent]) -> list[MarketEvent]:
    """Several instruments' events in time order (stable for equal times)."""
    return sorted((event for stream in streams for event in stream), key=lambda e: e.ts)


def run_strategy(
    strategy: Strategy | Mapping[str, Strategy],
    events: Iterable[MarketEvent],
    *,
    starting_cash: Decimal | int | str = 100_000,
    fill_at: str = "next",
    commission_bps: Decimal | int | str = 0,
    slippage_bps: Decimal | int | str = 0,
    validators: Sequence[Mapping[str, Any]] = (),
    strategy_id: str = "strategy",
    config: Mapping[str, Any] | None = None,
    plugins: Sequence[Any] = (),
) -> RunResult:
    """Backtest one strategy (or ``{id: strategy}``) over ``events`` with the paper trader and
    in-memory persistence; return the :class:`RunResult` (fills, rejections, snapshots)."""
    strategies = dict(strategy) if isinstance(strategy, Mapping) else {strategy_id: strategy}
    settings: dict[str, Any] = {
        "executor": {
            "name": "paper",
            "params": {
                "fill_at": fill_at,
                "commission_bps": str(commission_bps),
                "slippage_bps": str(slippage_bps),
            },
        },
        "persistence": {"name": "memory"},
        "portfolio": {"starting_cash": str(starting_cash)},
        "validators": list(validators),
    }
    for key, value in (config or {}).items():
        current = settings.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            if "name" in value and value["name"] != current.get("name"):
                settings[key] = dict(value)  # another component: its own params only
            else:
                settings[key] = merge_tables(dict(current), dict(value))
        else:
            settings[key] = value
    return backtest(settings, strategies=strategies, events=events, plugins=plugins)
