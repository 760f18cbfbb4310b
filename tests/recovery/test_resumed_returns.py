"""The total return compares the same portfolios at the start and at the end of a run.

The final equity sums every portfolio's final snapshot, restored ones included, so the starting
equity must count the same portfolios: a resumed run that runs only some of the strategies
must not report the others' equity as profit.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

import tradeloom
from tradeloom import Strategy, hookimpl
from tradeloom.events import MarketTick
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.runtime.transport import Topics
from tradeloom.settings import Settings
from tradeloom.strategy import StrategyContext
from tradeloom.testing import ticks
from tradeloom.testing.persistence import make_fill


class BuyOnce(Strategy):
    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if ctx.position(tick.instrument) == 0:
            ctx.buy(tick.instrument, 1)


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "books.sqlite")}},
        "executor": {"name": "paper", "params": {"fill_at": "last"}},
        "portfolio": {"starting_cash": "1000"},
    }


def test_a_resumed_run_of_fewer_strategies_counts_the_restored_portfolios_at_both_ends(
    tmp_path: Path,
) -> None:
    first = tradeloom.backtest(
        config(tmp_path),
        strategies={"a": BuyOnce(), "b": BuyOnce()},
        events=ticks("X", ["10", "11", "12"]),
    )
    assert first.starting_equity == Decimal(2000)
    assert first.final_equity == Decimal(2004)  # each bought 1 at 10, now worth 12

    second = tradeloom.backtest(
        config(tmp_path),
        strategies={"a": BuyOnce()},
        events=ticks("X", ["10", "11", "12", "13"]),  # the same series, one tick longer
        resume=True,
    )
    assert (second.skipped_events, second.market_events) == (3, 1)  # resumed after tick 3
    assert sorted(second.snapshots) == ["a", "b"]
    # Both portfolios count at the start (as saved, X at 12) and at the end (X at 13).
    assert second.final_equity == Decimal(2006)
    assert second.starting_equity == sum(
        (snapshot.equity for snapshot in first.snapshots.values()), Decimal(0)
    )
    assert second.total_return == (Decimal(2006) - Decimal(2004)) / Decimal(2004)


class FillFromElsewhere:
    """Publishes a fill of a strategy this process does not run, as another process would."""

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Pipeline) -> None:
        fill = make_fill("elsewhere", instrument="X", side="buy", quantity="2", price="10")
        pipeline.transport.publish(Topics.FILLS, fill, fill.instrument)


def test_a_portfolio_first_seen_during_the_run_starts_from_its_starting_cash() -> None:
    settings = Settings(portfolio={"starting_cash": "1000"})
    pipeline = Pipeline(
        settings,
        events=ticks("X", ["10", "12"]),
        strategies={"idle": Strategy()},
        plugins=[FillFromElsewhere()],
    )
    result = anyio.run(pipeline.run)
    assert sorted(result.snapshots) == ["elsewhere", "idle"]
    assert result.starting_equity == Decimal(2000)
    # elsewhere: 1000 - 2 * 10 - 0.05 commission + 2 * 12 = 1003.95
    assert result.final_equity == Decimal("2003.95")
    assert result.total_return == Decimal("3.95") / Decimal(2000)
