"""A backtest freezes the collector's view of what existed before the run, a run collects the
young generation less often, and both are undone."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import uuid6

import tradeloom
from tradeloom.events import MarketTick
from tradeloom.runtime.collector import YOUNG_COLLECTION_EVERY, python_default_thresholds
from tradeloom.strategy import Strategy, StrategyContext

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def _ticks(count: int) -> list[MarketTick]:
    return [
        MarketTick(
            event_id=uuid6.uuid7(),
            ts=START + timedelta(seconds=index),
            instrument="ACME",
            last_price=Decimal("10.00") + index,
        )
        for index in range(count)
    ]


class _SeesFreezeCount(Strategy):
    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.counts.append(gc.get_freeze_count())
        if len(self.counts) == 1:
            ctx.buy(tick.instrument, 1)


def test_a_backtest_runs_frozen_and_unfreezes_after() -> None:
    assert gc.get_freeze_count() == 0
    strategy = _SeesFreezeCount()
    result = tradeloom.backtest(events=_ticks(3), strategies={"s": strategy})
    assert result.trade_count == 1
    assert len(strategy.counts) == 3 and all(count > 0 for count in strategy.counts)
    assert gc.get_freeze_count() == 0


def test_a_failed_backtest_unfreezes_too() -> None:
    class Fails(Strategy):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            raise RuntimeError("boom")

    with pytest.raises(tradeloom.errors.StrategyError, match="boom"):
        tradeloom.backtest(events=_ticks(2), strategies={"s": Fails()})
    assert gc.get_freeze_count() == 0


def test_objects_the_application_froze_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        strategy = _SeesFreezeCount()
        tradeloom.backtest(events=_ticks(2), strategies={"s": strategy})
        # The run froze nothing more (frozen objects may still be freed) and undid nothing.
        assert len(strategy.counts) == 2 and all(0 < n <= frozen for n in strategy.counts)
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


class _Node:
    """One object of a reference cycle, which only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


class _MakesCycles(Strategy):
    """Leaves one cycle of garbage per tick, and records how many are alive now and then."""

    def __init__(self) -> None:
        self.nodes: weakref.WeakSet[_Node] = weakref.WeakSet()
        self.alive: list[int] = []
        self.frozen: list[int] = []

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.nodes.add(_Node())
        self.seen = getattr(self, "seen", 0) + 1
        if self.seen == 1:
            ctx.buy(tick.instrument, 1)
        if self.seen % 1000 == 0:  # get_freeze_count walks the whole frozen set
            self.frozen.append(gc.get_freeze_count())

    def on_stop(self, ctx: StrategyContext) -> None:
        self.alive.append(len(self.nodes))


def test_what_outlives_each_stretch_of_a_backtest_is_frozen_after_collecting_garbage() -> None:
    strategy = _MakesCycles()
    # Few equity points kept: from CPython 3.13 on, Decimals are tracked by the collector, so
    # the kept (time, equity) points are frozen too, and thinning the curve frees some again.
    few_points = {"portfolio": {"equity_curve_points": 10}}
    result = tradeloom.backtest(few_points, events=_ticks(40_000), strategies={"s": strategy})
    assert result.trade_count == 1
    # The frozen set grows during the run (the result's fill, what else stays), step by step...
    assert strategy.frozen[-1] > strategy.frozen[0]
    assert len(set(strategy.frozen)) >= 40_000 // 8192 - 1
    # ...by what stays (one fill, a few results), not by the cycles of garbage made since the
    # last freeze: they are collected first (without that, several hundred more are frozen).
    assert strategy.frozen[-1] - strategy.frozen[0] < 300
    assert strategy.alive[0] < 8192  # only cycles made since the last freeze are left
    assert gc.get_freeze_count() == 0


class _SeesThresholds(Strategy):
    def __init__(self) -> None:
        self.thresholds: list[tuple[int, int, int]] = []

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.thresholds.append(gc.get_threshold())


@pytest.fixture
def python_defaults() -> Iterator[tuple[int, int, int]]:
    """The interpreter's default thresholds, set for the test and put back after it."""
    defaults = python_default_thresholds()
    if defaults is None:
        pytest.skip("the collector is tuned only on the Python versions it is known for")
    before = gc.get_threshold()
    gc.set_threshold(*defaults)
    yield defaults
    gc.set_threshold(*before)


def test_a_run_collects_the_young_generation_less_often_and_puts_it_back(
    python_defaults: tuple[int, int, int],
) -> None:
    strategy = _SeesThresholds()
    tradeloom.backtest(events=_ticks(2), strategies={"s": strategy})
    assert strategy.thresholds == [(YOUNG_COLLECTION_EVERY, *python_defaults[1:])] * 2
    assert gc.get_threshold() == python_defaults


def test_a_failed_run_puts_the_thresholds_back_too(python_defaults: tuple[int, int, int]) -> None:
    class Fails(Strategy):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            raise RuntimeError("boom")

    with pytest.raises(tradeloom.errors.StrategyError, match="boom"):
        tradeloom.backtest(events=_ticks(2), strategies={"s": Fails()})
    assert gc.get_threshold() == python_defaults


def test_thresholds_the_application_chose_are_left_alone(
    python_defaults: tuple[int, int, int],
) -> None:
    gc.set_threshold(2_001, 5, 5)
    strategy = _SeesThresholds()
    tradeloom.backtest(events=_ticks(2), strategies={"s": strategy})
    assert strategy.thresholds == [(2_001, 5, 5)] * 2
    assert gc.get_threshold() == (2_001, 5, 5)


def test_a_disabled_collector_stays_as_it_is(python_defaults: tuple[int, int, int]) -> None:
    gc.disable()
    try:
        strategy = _SeesThresholds()
        tradeloom.backtest(events=_ticks(1), strategies={"s": strategy})
        assert strategy.thresholds == [python_defaults]
        assert not gc.isenabled()
    finally:
        gc.enable()
