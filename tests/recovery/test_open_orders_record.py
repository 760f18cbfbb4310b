"""The record a backtest keeps of the orders still open at its last time, read back only when
it is that of the stored state's last time and whole."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import tradeloom
from tradeloom import Strategy, hookimpl
from tradeloom.components import Feed
from tradeloom.errors import StrategyError
from tradeloom.events import Bar, OrderType, Side, Signal
from tradeloom.runtime.open_at_last_time import OPEN_ORDERS_KEY, read_open_orders
from tradeloom.testing import bars, merge
from tradeloom_sqlite.persistence import SqlitePersistence

T = datetime(2024, 1, 5, tzinfo=UTC)


def signal(strategy_id: str = "s", ts: datetime = T) -> Signal:
    return Signal(
        event_id=UUID("01900000-0000-7000-8000-000000000001"),
        ts=ts,
        strategy_id=strategy_id,
        instrument="X",
        side=Side.SELL,
        quantity=Decimal("1.50"),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("101.25"),
        market_ts=ts,
    )


def kept(time: datetime, *signals: Signal, version: Any = 1) -> dict[str, str]:
    document = {
        "version": version,
        "time": time.isoformat(),
        "open": [s.model_dump(mode="json") for s in signals],
    }
    return {OPEN_ORDERS_KEY: json.dumps(document)}


def test_the_record_of_the_last_time_is_read_back_by_strategy() -> None:
    read = read_open_orders(kept(T, signal("a"), signal("b"), signal("a")), T)
    assert read == {"a": [signal("a"), signal("a")], "b": [signal("b")]}
    assert read["a"][0].quantity.as_tuple() == Decimal("1.50").as_tuple()
    assert read_open_orders(kept(T), T) == {}  # nothing was open


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"other": "x"},
        {OPEN_ORDERS_KEY: "not json"},
        {OPEN_ORDERS_KEY: "[]"},
        {OPEN_ORDERS_KEY: json.dumps({"version": 1, "time": T.isoformat()})},
        {OPEN_ORDERS_KEY: json.dumps({"version": 1, "time": "noon", "open": []})},
        {OPEN_ORDERS_KEY: json.dumps({"version": 1, "time": 5, "open": []})},
        {OPEN_ORDERS_KEY: json.dumps({"version": 1, "time": "2024-01-05T00:00:00", "open": []})},
        {OPEN_ORDERS_KEY: json.dumps({"version": 1, "time": T.isoformat(), "open": [{}]})},
        {OPEN_ORDERS_KEY: json.dumps({"version": 1, "time": T.isoformat(), "open": [1]})},
        kept(T, signal(), version=2),
        kept(T - timedelta(days=1), signal(ts=T - timedelta(days=1))),  # an earlier state's
        kept(T, signal(ts=T - timedelta(days=1))),  # a signal of another time
    ],
)
def test_anything_but_the_whole_record_of_the_last_time_is_no_record(
    metadata: dict[str, str],
) -> None:
    assert read_open_orders(metadata, T) is None


class TurnsOver(Strategy):
    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if not ctx.open_quantity("X"):
            (ctx.sell if ctx.position("X") else ctx.buy)("X", 1)


class NoRecord(SqlitePersistence):
    """Refuses to keep the open orders' record (a back end failing just then)."""

    def save_metadata(self, items: Any) -> None:
        if OPEN_ORDERS_KEY in items:
            raise OSError("disk full")
        super().save_metadata(items)


class NoRecordPlugin:
    @hookimpl
    def tradeloom_register_persistence(self) -> dict[str, Any]:
        return {"no_record": NoRecord}


def test_a_record_that_cannot_be_kept_is_a_warning_and_the_state_is_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bars("X", [str(100 + i % 7) for i in range(12)])
    settings: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "no_record", "params": {"path": str(tmp_path / "s.db")}},
    }
    with caplog.at_level(logging.WARNING, logger="tradeloom.pipeline"):
        first = tradeloom.backtest(
            settings, strategies={"s": TurnsOver()}, events=data[:6], plugins=[NoRecordPlugin()]
        )
    assert not first.unsaved_portfolios
    assert "raised in save_metadata(): OSError: disk full; a run resumed from this state " in (
        caplog.text
    )
    stored = SqlitePersistence(path=str(tmp_path / "s.db"))
    stored.open()
    try:
        assert OPEN_ORDERS_KEY not in stored.load_metadata()
        assert len(stored.load_fills()) == len(first.fills)
    finally:
        stored.close()


class AsyncEvents(Feed):
    def __init__(self, events: list[Any]) -> None:
        self._events = events

    async def events(self, ctx: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for event in self._events:
            yield event


class StopAt:
    def __init__(self, at: datetime) -> None:
        self.at = at
        self.pipeline: Any = None

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    @hookimpl
    def tradeloom_event_observed(self, stage: str, direction: str, event: Any) -> None:
        if stage == "feed" and event.ts == self.at:
            self.pipeline.stop()


class FailsAt(TurnsOver):
    def __init__(self, at: datetime) -> None:
        self.at = at

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if bar.ts == self.at:
            raise RuntimeError("a bug")
        super().on_bar(bar, ctx)


def stored_record(state: Path) -> Any:
    stored = SqlitePersistence(path=str(state))
    stored.open()
    try:
        text = stored.load_metadata().get(OPEN_ORDERS_KEY)
    finally:
        stored.close()
    return None if text is None else json.loads(text)


def test_a_backtest_keeps_the_record_only_when_it_took_its_last_time_whole(
    tmp_path: Path,
) -> None:
    data = merge(bars("X", [str(100 + i % 7) for i in range(12)]), bars("Y", ["5"] * 12))
    settings = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "ended.db")}},
    }
    ended = tradeloom.backtest(settings, strategies={"s": TurnsOver()}, events=data)
    record = stored_record(tmp_path / "ended.db")
    assert record["time"] == ended.last_event_time.isoformat()  # type: ignore[union-attr]
    assert [(s["side"], s["quantity"]) for s in record["open"]] == [("sell", "1")]

    # An async feed stopped after X's bar of a time, before Y's: that time was not taken whole.
    settings["persistence"]["params"]["path"] = str(tmp_path / "stopped.db")  # type: ignore[index]
    stopped = tradeloom.backtest(
        settings,
        strategies={"s": TurnsOver()},
        feed=AsyncEvents(data),
        plugins=[StopAt(data[8].ts)],
    )
    assert stopped.market_events == 9 and stopped.fill_count > 0
    assert stored_record(tmp_path / "stopped.db") is None

    # A strategy that failed on a bar: the state is saved, the time was not taken whole.
    settings["persistence"]["params"]["path"] = str(tmp_path / "failed.db")  # type: ignore[index]
    with pytest.raises(StrategyError, match="a bug"):
        tradeloom.backtest(settings, strategies={"s": FailsAt(data[8].ts)}, events=data)
    failed = SqlitePersistence(path=str(tmp_path / "failed.db"))
    failed.open()
    try:
        assert failed.load_fills()  # the state was saved
    finally:
        failed.close()
    assert stored_record(tmp_path / "failed.db") is None
