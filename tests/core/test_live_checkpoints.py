"""A live run's checkpoints are its ticker's: market events keep flowing while one is written
(in a thread), rather than waiting behind the write at the feed's pauses."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from tradeloom import Pipeline, Strategy, hookimpl
from tradeloom.api import make_settings
from tradeloom.components import Feed, FeedContext
from tradeloom.events import MarketTick

T0 = datetime(2024, 1, 2, tzinfo=UTC)
MOST_TICKS = 1_000_000
MORE_TICKS_DURING_THE_WRITE = 300


class Watch:
    """What the test sees: ticks taken, and whether a snapshot write is held."""

    def __init__(self) -> None:
        self.ticks = 0
        self.held_at: int | None = None
        self.release = threading.Event()
        self.timed_out = False


WATCH = Watch()


class HeldSnapshots:
    """sqlite, whose first snapshot write waits until the feed has moved on (or 10 s)."""

    def __new__(cls, **params: Any) -> Any:
        from tradeloom_sqlite.persistence import SqlitePersistence

        class Held(SqlitePersistence):
            def save_snapshots(self, snapshots: Any) -> None:
                if WATCH.held_at is None:
                    WATCH.held_at = WATCH.ticks
                    WATCH.timed_out = not WATCH.release.wait(timeout=10)
                super().save_snapshots(snapshots)

        return Held(**params)


class Plugin:
    @hookimpl
    def tradeloom_register_persistence(self) -> dict[str, Any]:
        return {"held": HeldSnapshots}


class Ticks(Feed):
    """A live source: ticks that come as fast as they are taken, until the held write is let
    go (or a million)."""

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        for index in range(MOST_TICKS):
            if WATCH.release.is_set():
                return
            yield MarketTick(
                event_id=ctx.ids.new_id(),
                ts=T0 + timedelta(milliseconds=index),
                instrument="X",
                last_price=Decimal(100 + index % 3),
            )
            if not index % 8:
                await anyio.sleep(0)


class TurnsOver(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Any) -> None:
        WATCH.ticks += 1
        held = WATCH.held_at
        if held is not None and WATCH.ticks >= held + MORE_TICKS_DURING_THE_WRITE:
            WATCH.release.set()
        if not WATCH.ticks % 1000 and not ctx.open_quantity("X"):  # a fill now and then
            (ctx.sell if ctx.position("X") else ctx.buy)("X", 1)


def test_market_events_flow_while_a_live_checkpoint_is_written(tmp_path: Path) -> None:
    global WATCH
    WATCH = Watch()
    settings = make_settings(
        {
            "executor": {"name": "paper", "params": {"fill_at": "last"}},
            "persistence": {"name": "held", "params": {"path": str(tmp_path / "s.db")}},
            "portfolio": {"snapshot_interval_seconds": 0.000001},
        }
    )
    pipeline = Pipeline(
        settings, mode="live", feed=Ticks(), strategies={"t": TurnsOver()}, plugins=[Plugin()]
    )
    result = anyio.run(pipeline.run)
    assert WATCH.held_at is not None and result.market_events < MOST_TICKS
    assert not WATCH.timed_out  # the feed went on while the write was held
