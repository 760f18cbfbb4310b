"""The record a backtest keeps of the orders in flight when it stops, read back only when it is
that of the stored state's last time and whole."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from resume_support import AsyncEvents, StopAt

import tradeloom
from tradeloom import Strategy, hookimpl
from tradeloom.errors import StrategyError
from tradeloom.events import Bar, Order, OrderType, Side, Signal
from tradeloom.runtime.in_flight import IN_FLIGHT_KEY, InFlight, read_in_flight, record_in_flight
from tradeloom.testing import bars, merge
from tradeloom_paper.trader import PaperTrader
from tradeloom_sqlite.persistence import SqlitePersistence

T = datetime(2024, 1, 5, tzinfo=UTC)
ID = UUID("01900000-0000-7000-8000-000000000001")


def signal(strategy_id: str = "s", ts: datetime = T) -> Signal:
    return Signal(
        event_id=ID,
        ts=ts,
        strategy_id=strategy_id,
        instrument="X",
        side=Side.SELL,
        quantity=Decimal("1.50"),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("101.25"),
        market_ts=ts,
    )


def order(strategy_id: str = "s", ts: datetime = T) -> Order:
    return Order(
        **signal(strategy_id, ts).model_dump(exclude={"type", "event_id"}),
        event_id=UUID("01900000-0000-7000-8000-000000000002"),
        signal_id=ID,
    )


def kept(in_flight: InFlight, **changes: Any) -> dict[str, str]:
    document = json.loads(record_in_flight(in_flight))
    document.update(changes)
    return {IN_FLIGHT_KEY: json.dumps(document)}


def test_the_record_of_the_last_time_is_read_back_as_it_was() -> None:
    earlier = T - timedelta(days=2)  # an order waits from before the last time
    stored = InFlight(T, [order("a", earlier), order("b")], [signal("a")])
    read = read_in_flight(kept(stored), T)
    assert read == stored
    assert read is not None and read.orders[0].quantity.as_tuple() == Decimal("1.50").as_tuple()
    assert read_in_flight(kept(InFlight(T, [], [])), T) == InFlight(T, [], [])


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"other": "x"},
        {IN_FLIGHT_KEY: "not json"},
        {IN_FLIGHT_KEY: "[]"},
        {IN_FLIGHT_KEY: json.dumps({"version": 1, "time": T.isoformat(), "orders": []})},
        kept(InFlight(T, [], []), time="noon"),
        kept(InFlight(T, [], []), time=5),
        kept(InFlight(T, [], []), time="2024-01-05T00:00:00"),  # not aware
        kept(InFlight(T, [], []), orders=[{}]),
        kept(InFlight(T, [], []), signals=[1]),
        kept(InFlight(T, [order()], []), version=2),
        kept(InFlight(T - timedelta(days=1), [], [])),  # an earlier state's
        kept(InFlight(T, [order(ts=T + timedelta(days=1))], [])),  # made after that time
    ],
)
def test_anything_but_the_whole_record_of_the_last_time_is_no_record(
    metadata: dict[str, str],
) -> None:
    assert read_in_flight(metadata, T) is None


class TurnsOver(Strategy):
    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if not ctx.open_quantity("X"):
            (ctx.sell if ctx.position("X") else ctx.buy)("X", 1)


class NoRecord(SqlitePersistence):
    """Refuses to keep the record of the orders in flight (a back end failing just then)."""

    def save_metadata(self, items: Any) -> None:
        if IN_FLIGHT_KEY in items:
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
        assert IN_FLIGHT_KEY not in stored.load_metadata()
        assert len(stored.load_fills()) == len(first.fills)
    finally:
        stored.close()


def test_a_record_that_cannot_be_kept_is_said_once_however_many_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bars("X", [str(100 + i % 7) for i in range(5_000)])
    settings: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "no_record", "params": {"path": str(tmp_path / "s.db")}},
        "portfolio": {"snapshot_interval_seconds": 0.000001},
    }
    with caplog.at_level(logging.WARNING, logger="tradeloom.pipeline"):
        result = tradeloom.backtest(
            settings, strategies={"s": TurnsOver()}, events=data, plugins=[NoRecordPlugin()]
        )
    assert not result.unsaved_portfolios
    assert caplog.text.count("OSError: disk full; a run resumed from this state") == 1


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
        text = stored.load_metadata().get(IN_FLIGHT_KEY)
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
    assert [(o["instrument"], o["side"], o["quantity"]) for o in record["orders"]] == [
        ("X", "sell", "1")
    ]
    assert record["signals"] == []

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


class BuysZ(Strategy):
    """Buys Z on the second bar, before Z has a price: the signal waits at the risk stage."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if bar.ts == self.at:
            ctx.buy("Z", 2)


def test_signals_waiting_for_a_first_price_are_kept_and_wait_again(tmp_path: Path) -> None:
    data = merge(bars("X", ["10"] * 6), bars("Z", ["7", "8"], start=bars("X", ["10"] * 6)[4].ts))
    pending = {"max_wait_seconds": 30 * 86400}  # a month, for daily bars

    def settings(state: str) -> dict[str, Any]:
        return {
            "pending": pending,
            "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / state)}},
        }

    whole = tradeloom.backtest(settings("w.db"), strategies={"s": BuysZ(data[1].ts)}, events=data)
    first = tradeloom.backtest(
        settings("s.db"), strategies={"s": BuysZ(data[1].ts)}, events=data[:3]
    )
    record = stored_record(tmp_path / "s.db")
    assert [(s["instrument"], s["quantity"]) for s in record["signals"]] == [("Z", "2")]
    assert record["orders"] == []
    [rejection] = first.rejections  # at the end of its input, as before
    assert rejection.reason == "input ended before a first price for Z arrived"
    second = tradeloom.backtest(
        settings("s.db"), strategies={"s": BuysZ(data[1].ts)}, events=data, resume=True
    )
    assert [(f.instrument, f.quantity) for f in whole.fills] == [("Z", 2)]
    assert [(f.ts, f.quantity, f.price) for f in second.fills] == [
        (f.ts, f.quantity, f.price) for f in whole.fills
    ]
    assert second.final_equity == whole.final_equity


class Unsure(PaperTrader):
    """The paper trader, but it cannot tell (or fails to tell) what waits."""

    how = "none"

    def waiting_orders(self) -> Any:
        if self.how == "raises":
            raise RuntimeError("lost track")
        if self.how == "dicts":
            return [order.model_dump() for order in super().waiting_orders()]
        return None


class UnsurePlugin:
    @hookimpl
    def tradeloom_register_executors(self) -> dict[str, Any]:
        return {"unsure": Unsure}


@pytest.mark.parametrize("how", ["none", "raises", "dicts"])
def test_without_the_executors_waiting_orders_no_record_is_kept(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever the executor does there, the state is saved: the record only informs.
    Unsure.how = how
    data = bars("X", [str(100 + i % 7) for i in range(12)])
    settings = {
        "executor": {"name": "unsure"},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
    }
    with caplog.at_level(logging.WARNING, logger="tradeloom.pipeline"):
        result = tradeloom.backtest(
            settings, strategies={"s": TurnsOver()}, events=data[:6], plugins=[UnsurePlugin()]
        )
    assert result.fill_count == 5 and not result.unsaved_portfolios
    assert stored_record(tmp_path / "s.db") is None
    said = {
        "none": None,
        "raises": "RuntimeError: lost track",
        "dicts": "TypeError: waiting_orders() must return a list of Orders, not dict",
    }[how]
    warned = "a run resumed from this state cannot place them again" in caplog.text
    assert warned is (said is not None)
    if said is not None:
        assert f"the executor could not tell its waiting orders ({said})" in caplog.text


class StrictTurnsOver(TurnsOver):
    """Fails when the end of input refuses its order (in on_rejection), or in on_stop after
    flattening its position."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_rejection(self, rejection: Any, ctx: Any) -> None:
        if self.where == "on_rejection" and "input ended" in rejection.reason:
            raise RuntimeError("did not expect a rejection")

    def on_stop(self, ctx: Any) -> None:
        if self.where == "on_stop":
            if ctx.position("X"):
                ctx.sell("X", ctx.position("X"))
            raise RuntimeError("failed in on_stop")


@pytest.mark.parametrize("where", ["on_rejection", "on_stop"])
def test_a_run_failing_after_its_input_ended_keeps_what_was_in_flight_as_it_ended(
    tmp_path: Path, where: str
) -> None:
    # The record is taken as the input ends: not after the end's rejections emptied the
    # executor (the order in flight was lost), nor with on_stop's orders in it (one was
    # filled in the middle of the resumed data).
    data = bars("X", [str(100 + i % 7) for i in range(12)])

    def settings(state: str) -> dict[str, Any]:
        return {
            "executor": {"name": "paper", "params": {"fill_at": "next"}},
            "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / state)}},
        }

    whole = tradeloom.backtest(settings("w.db"), strategies={"s": TurnsOver()}, events=data)
    with pytest.raises(StrategyError):
        tradeloom.backtest(
            settings("s.db"), strategies={"s": StrictTurnsOver(where)}, events=data[:6]
        )
    record = stored_record(tmp_path / "s.db")
    assert [(o["side"], o["quantity"]) for o in record["orders"]] == [("sell", "1")]
    second = tradeloom.backtest(
        settings("s.db"), strategies={"s": TurnsOver()}, events=data, resume=True
    )
    expected = [(f.ts, f.side, f.price) for f in whole.fills[5:]]
    assert [(f.ts, f.side, f.price) for f in second.fills] == expected


def test_orders_of_removed_strategies_are_named_also_without_a_warm_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bars("X", [str(100 + i % 7) for i in range(12)])
    settings = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
    }
    tradeloom.backtest(settings, strategies={"old": TurnsOver()}, events=data[:6])
    with caplog.at_level(logging.WARNING, logger="tradeloom.pipeline"):
        tradeloom.backtest(settings, strategies={"new": TurnsOver()}, events=data[6:], resume=True)
    assert (
        "the stored state has 1 order(s) in flight of strategies this run does not have "
        "('old'): not placed again"
    ) in caplog.text


def test_an_executor_that_cannot_tell_is_said_once_however_many_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each pause of this run checkpoints (and takes the record): five of them, one warning.
    Unsure.how = "raises"
    data = bars("X", [str(100 + i % 7) for i in range(5_000)])
    settings = {
        "executor": {"name": "unsure"},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
        "portfolio": {"snapshot_interval_seconds": 0.000001},
    }
    with caplog.at_level(logging.WARNING, logger="tradeloom.pipeline"):
        result = tradeloom.backtest(
            settings, strategies={"s": TurnsOver()}, events=data, plugins=[UnsurePlugin()]
        )
    assert result.market_events == 5_000 and not result.unsaved_portfolios
    assert caplog.text.count("the executor could not tell its waiting orders") == 1
