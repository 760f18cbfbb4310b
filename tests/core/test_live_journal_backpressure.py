"""A live run whose fills come faster than the journal takes them waits for the journal at the
feed's pauses: fills waiting to be journaled stay bounded, and checkpoints get to their
snapshots while the feed runs (before, a checkpoint journaled for as long as fills kept coming,
and saved no snapshot until the feed ended)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from tradeloom import Pipeline, Strategy, hookimpl
from tradeloom.api import make_settings
from tradeloom.components import Feed, FeedContext
from tradeloom.events import MarketTick
from tradeloom.runtime.pipeline import _LIVE_YIELD_EVERY
from tradeloom_sqlite.persistence import SqlitePersistence

T0 = datetime(2024, 1, 2, tzinfo=UTC)
TICKS = 6_000
LIMIT = 100
JOURNAL_WRITE_SECONDS = 0.02


class Watch:
    def __init__(self) -> None:
        self.ticks = 0
        self.journal_batches: list[int] = []
        self.snapshots_saved_at_ticks: list[int] = []


WATCH = Watch()


class SlowJournal(SqlitePersistence):
    """sqlite whose journal write takes a while, as a busy database's would; a failing one
    with ``fail=True``."""

    def __init__(self, *, fail: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.fail = fail

    def record_fills(self, fills: Any) -> None:
        WATCH.journal_batches.append(len(fills))
        if self.fail:
            raise OSError("the database is down")
        time.sleep(JOURNAL_WRITE_SECONDS)
        super().record_fills(fills)

    def save_snapshots(self, snapshots: Any) -> None:
        WATCH.snapshots_saved_at_ticks.append(WATCH.ticks)
        super().save_snapshots(snapshots)


class Plugin:
    @hookimpl
    def tradeloom_register_persistence(self) -> dict[str, Any]:
        return {"slow-journal": SlowJournal}

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Any) -> None:
        pipeline.portfolio_stage.unjournaled_fills_limit = LIMIT


class Ticks(Feed):
    def events(self, ctx: FeedContext) -> Iterator[MarketTick]:  # type: ignore[override]
        for index in range(TICKS):
            yield MarketTick(
                event_id=ctx.ids.new_id(),
                ts=T0 + timedelta(milliseconds=index),
                instrument="X",
                last_price=Decimal(100 + index % 3),
            )


class TradesEveryTick(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Any) -> None:
        WATCH.ticks += 1
        (ctx.sell if ctx.position("X") else ctx.buy)("X", 1)


def run_live(tmp_path: Path, **persistence_params: Any) -> Any:
    global WATCH
    WATCH = Watch()
    settings = make_settings(
        {
            "executor": {"name": "paper", "params": {"fill_at": "last"}},
            "persistence": {
                "name": "slow-journal",
                "params": {"path": str(tmp_path / "state.db"), **persistence_params},
            },
            "portfolio": {"snapshot_interval_seconds": 0.05},
        }
    )
    pipeline = Pipeline(
        settings,
        mode="live",
        feed=Ticks(),
        strategies={"t": TradesEveryTick()},
        plugins=[Plugin()],
    )
    return anyio.run(pipeline.run)


def test_fills_waiting_for_the_journal_stay_bounded_and_snapshots_are_saved(
    tmp_path: Path,
) -> None:
    result = run_live(tmp_path)
    assert result.market_events == TICKS
    assert len(result.fills) == TICKS
    # At most the limit, and the fills of the events since the last pause of the feed.
    assert max(WATCH.journal_batches) <= LIMIT + _LIVE_YIELD_EVERY
    assert sum(WATCH.journal_batches) == TICKS
    assert any(ticks < TICKS for ticks in WATCH.snapshots_saved_at_ticks), (
        WATCH.snapshots_saved_at_ticks
    )
    stored = SqlitePersistence(path=str(tmp_path / "state.db"))
    stored.open()
    try:
        assert len(stored.load_fills()) == TICKS
    finally:
        stored.close()


def test_a_failing_journal_does_not_hold_the_feed(tmp_path: Path) -> None:
    # The ticker tries again (and health says so); the feed is not held back to try at every
    # pause of its own.
    result = run_live(tmp_path, fail=True)
    assert result.market_events == TICKS
    assert len(WATCH.journal_batches) < TICKS // _LIVE_YIELD_EVERY // 4, WATCH.journal_batches
