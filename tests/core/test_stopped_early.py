"""A run that fails or is interrupted leaves a result of what happened until then: the market
events delivered and the books as they are (marked to the latest prices), saved or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tradeloom import Strategy, hookimpl
from tradeloom.components import Feed, FeedContext
from tradeloom.errors import PersistenceError, StrategyError
from tradeloom.events import MarketTick, PortfolioSnapshot
from tradeloom.runtime.pipeline import _YIELD_EVERY as BLOCK
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
    events = ticks("X", prices)
    pipeline = Pipeline(
        Settings(executor={"name": "paper", "params": {"fill_at": "next"}}),
        mode="backtest",
        strategies={"s": BuysThenFails(fail_on=2500)},
        events=events,
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
    # Counted up to the event it failed on, as the status does, with that event's time.
    assert result.market_events == pipeline.status.market_events == 2500
    assert result.last_event_time == events[2499].ts


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


class AsyncTicks(Feed):
    def __init__(self, events: list[MarketTick]) -> None:
        self.given = events

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        for tick in self.given:
            yield tick


def test_a_failed_run_on_an_async_feed_counts_up_to_the_event_it_failed_on() -> None:
    events = ticks("X", [Decimal(10) + index for index in range(50)])
    pipeline = Pipeline(
        Settings(executor={"name": "paper", "params": {"fill_at": "next"}}),
        mode="backtest",
        strategies={"s": BuysThenFails(fail_on=7)},
        feed=AsyncTicks(events),
    )
    with pytest.raises(StrategyError, match="boom"):
        anyio.run(pipeline.run)
    assert pipeline.result.market_events == pipeline.status.market_events == 7
    assert pipeline.result.last_event_time == events[6].ts
    assert pipeline.result.first_event_time == events[0].ts


class CancelsOnTick(Strategy):
    """Cancels the scope the run is in on tick ``on`` (as Ctrl-C cancels a backtest's task)."""

    def __init__(self, on: int) -> None:
        self.on = on
        self.seen = 0
        self.scope: anyio.CancelScope | None = None

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.seen += 1
        if self.seen == 1:
            ctx.buy(tick.instrument, 1)
        if self.seen == self.on and self.scope is not None:
            self.scope.cancel()


class SeesTheResult:
    def __init__(self) -> None:
        self.told: list[tuple[str | None, int]] = []

    @hookimpl
    def tradeloom_pipeline_stopped(self, pipeline: Pipeline, result: Any) -> None:
        self.told.append((result.interrupted, result.market_events))


def test_an_interrupted_run_says_where_it_stopped_before_plugins_are_told() -> None:
    events = ticks("X", [Decimal(10) + index % 7 for index in range(20_000)])
    strategy = CancelsOnTick(on=5000)
    watcher = SeesTheResult()
    pipeline = Pipeline(
        Settings(executor={"name": "paper", "params": {"fill_at": "next"}}),
        mode="backtest",
        strategies={"s": strategy},
        events=events,
        plugins=[watcher],
    )

    async def run() -> None:
        with anyio.CancelScope() as scope:
            strategy.scope = scope
            await pipeline.run()

    anyio.run(run)
    result = pipeline.result
    # Cancelled at the end of the block it was asked in (the pipeline yields between blocks).
    stopped_after = -(-5000 // BLOCK) * BLOCK
    assert 5000 <= result.market_events == stopped_after < 20_000
    where = f"at market time {events[stopped_after - 1].ts.isoformat()} (1 fills so far)"
    assert result.interrupted == where
    assert watcher.told == [(where, stopped_after)]
    assert result.summary()["interrupted"] == where


def test_a_failed_run_is_not_called_interrupted() -> None:
    pipeline = Pipeline(
        Settings(),
        mode="backtest",
        strategies={"s": BuysThenFails(fail_on=3)},
        events=ticks("X", [Decimal(10)] * 10),
    )
    with pytest.raises(StrategyError):
        anyio.run(pipeline.run)
    assert pipeline.result.interrupted is None


def test_a_run_ended_by_a_ctrl_c_and_an_error_at_once_is_both_interrupted_and_failed() -> None:
    from tradeloom.runtime.pipeline import how_it_ended

    error = ValueError("feed broke")
    both = BaseExceptionGroup("tasks", [KeyboardInterrupt(), ExceptionGroup("inner", [error])])
    assert how_it_ended(both, asyncio.CancelledError) == (True, error)
    errors = ExceptionGroup("tasks", [error, RuntimeError("and this")])
    # A group of errors alone is the failure as it is, every error in it.
    assert how_it_ended(errors, asyncio.CancelledError) == (False, errors)
    cancelled = BaseExceptionGroup("tasks", [asyncio.CancelledError()])
    assert how_it_ended(cancelled, asyncio.CancelledError) == (True, None)
    assert how_it_ended(KeyboardInterrupt(), asyncio.CancelledError) == (True, None)
    assert how_it_ended(error, asyncio.CancelledError) == (False, error)
