"""A run that fails or is interrupted leaves a result of what happened until then: the market
events delivered and the books as they are (marked to the latest prices), saved or not."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tradeloom import Strategy, hookimpl
from tradeloom.errors import PersistenceError, StrategyError
from tradeloom.events import MarketTick, PortfolioSnapshot
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.settings import Settings
from tradeloom.strategy import StrategyContext
from tradeloom.testing import ticks
from tradeloom_memory.persistence import MemoryPersistence


class BuysThenFails(Strategy):
    """Buys 10 on the first tick; raises on tick ``fail_on`` (1-based)."""

    def __init__(self, fail_on: int) -> None:
        self.fail_on = fail_on
        self.seen = 0

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.seen += 1
        if self.seen == 1:
            ctx.buy(tick.instrument, 10)
        if self.seen == self.fail_on:
            raise RuntimeError("boom")


def test_a_failed_backtest_leaves_the_books_as_they_are_in_its_result() -> None:
    prices = [Decimal(10) + index for index in range(3000)]  # rising: the position gains
    pipeline = Pipeline(
        Settings(executor={"name": "paper", "params": {"fill_at": "next"}}),
        mode="backtest",
        strategies={"s": BuysThenFails(fail_on=2500)},
        events=ticks("X", prices),
    )
    with pytest.raises(StrategyError, match="boom"):
        anyio.run(pipeline.run)
    result = pipeline.result
    # Bought 10 at the second price (11), marked at the price it failed on (10 + 2499).
    assert [fill.price for fill in result.fills] == [Decimal(11)]
    snapshot = result.snapshots["s"]
    assert snapshot.positions["X"].quantity == 10
    assert result.final_equity == Decimal(100_000) - 110 + 10 * Decimal(2509)
    assert result.equity_curve.series()[-1][1] == result.final_equity
    # Counted up to the last whole block delivered, as the status does.
    assert result.market_events == pipeline.status.market_events == 2048
    assert result.last_event_time is not None


class CannotSaveSnapshots(MemoryPersistence):
    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        raise PersistenceError("disk full")


class _Plugin:
    @hookimpl
    def tradeloom_register_persistence(self) -> dict[str, Any]:
        return {"cannot_save": CannotSaveSnapshots}


def test_the_result_shows_the_books_also_when_their_state_could_not_be_saved() -> None:
    prices = [Decimal(10) + index for index in range(3000)]
    pipeline = Pipeline(
        Settings(persistence={"name": "cannot_save"}),
        mode="backtest",
        strategies={"s": BuysThenFails(fail_on=2500)},
        events=ticks("X", prices),
        plugins=[_Plugin()],
    )
    with pytest.raises(StrategyError, match="boom"):
        anyio.run(pipeline.run)
    result = pipeline.result
    assert result.unsaved_portfolios == ["s"]
    assert result.snapshots["s"].positions["X"].quantity == 10
    assert result.final_equity == Decimal(100_000) - 110 + 10 * Decimal(2509)
