"""A resumed backtest warms its strategies up on the events the stored state holds.

The strategies see those events (with ``ctx.warming_up`` set and their orders not sent), so
their indicators are as they were where the state ends, and the resumed run trades as one that
never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from resume_support import AsyncEvents, StopAt, orcl_config

import tradeloom
import tradeloom.errors
import tradeloom.plugins
import tradeloom.testing.feeds
from tradeloom import Strategy, hookimpl
from tradeloom.api import make_settings
from tradeloom.events import Bar, Fill
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.testing import bars, merge, ticks
from tradeloom_paper.trader import PaperTrader
from tradeloom_strategies.sma_cross import SmaCross


def trades(fills: list[Fill]) -> list[tuple[datetime, str, Decimal, Decimal]]:
    return [(f.ts, f.side.value, f.quantity, f.price) for f in fills]


def test_a_backtest_resumed_on_longer_data_trades_as_one_run_over_all_of_it(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = shared_data / "orcl-1995-2014.txt"
    lines = full.read_text().splitlines(keepends=True)
    first_half = tmp_path / "orcl-first-half.txt"
    first_half.write_text("".join(lines[:2501]))  # the header and 2,500 days
    whole = tradeloom.backtest(orcl_config(full, tmp_path / "whole.sqlite"))

    state = tmp_path / "state.sqlite"
    first = tradeloom.backtest(orcl_config(first_half, state))
    with caplog.at_level("INFO", logger="tradeloom.pipeline"):
        second = tradeloom.backtest(orcl_config(full, state), resume=True)

    # Without the warm-up the resumed strategy needed 30 new days for its averages and missed
    # the crossing five days after the state's end: 193 fills instead of 195.
    assert trades(first.fills + second.fills) == trades(whole.fills)
    assert second.final_equity == whole.final_equity
    assert "strategies warmed up on the 2,500 market event(s) the stored state holds" in (
        caplog.text
    )


def sma_settings(state: Path) -> dict[str, Any]:
    return {
        "strategies": [{"name": "sma_cross", "id": "s", "params": {"fast": 3, "slow": 8}}],
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "sqlite", "params": {"path": str(state)}},
    }


CUT = 1024  # a plain feed's run stops at the end of a block of 1,024 events


def walk(shift: int) -> list[Bar]:
    return bars("X", [str(100 + (day * 7) % 11 + day // 97) for day in range(shift, shift + 1200)])


@pytest.mark.parametrize("feed_kind", ["plain", "async"])
@pytest.mark.parametrize("how", ["data that grew", "a stop"])
def test_a_resumed_backtest_trades_as_one_that_never_stopped(
    tmp_path: Path, feed_kind: str, how: str
) -> None:
    # Data whose state ends at a bar with no order on its way (a market order made on the
    # state's last bar fills at the next one, which the run that stored the state never had:
    # see the docs) and with a fill within the slow average's length after it.
    for shift in range(100):
        data = walk(shift)
        whole = tradeloom.backtest(sma_settings(tmp_path / f"whole-{shift}.db"), events=data)
        fill_times = {fill.ts for fill in whole.fills}
        if data[CUT].ts not in fill_times and any(
            data[CUT].ts < ts <= data[CUT + 8].ts for ts in fill_times
        ):
            break
    else:
        pytest.fail("no such data")

    def given(events: list[Bar]) -> dict[str, Any]:
        return {"events": events} if feed_kind == "plain" else {"feed": AsyncEvents(events)}

    state = tmp_path / "state.db"
    if how == "a stop":
        stop = StopAt(data[CUT - 1].ts)
        first = tradeloom.backtest(sma_settings(state), plugins=[stop], **given(data))
    else:
        first = tradeloom.backtest(sma_settings(state), **given(data[:CUT]))
    assert first.market_events == CUT
    second = tradeloom.backtest(sma_settings(state), resume=True, **given(data))
    assert second.skipped_events == CUT
    assert trades(first.fills + second.fills) == trades(whole.fills)
    assert second.final_equity == whole.final_equity


class Eager(Strategy):
    """Buys whenever it is flat; records what it sees."""

    def __init__(self) -> None:
        self.started: tuple[datetime, bool] | None = None
        self.seen: list[tuple[datetime, bool]] = []
        self.not_sent: list[Any] = []
        self.open_while_warming_up: list[Decimal] = []

    def on_start(self, ctx: Any) -> None:
        self.started = (ctx.now(), ctx.warming_up)

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        assert ctx.now() == bar.ts  # the clock moves with the warm-up events too
        self.seen.append((bar.ts, ctx.warming_up))
        if not ctx.position("X") and not ctx.open_quantity("X"):
            signal = ctx.buy("X", 1)
            if ctx.warming_up:
                self.not_sent.append(signal)
                self.open_while_warming_up.append(ctx.open_quantity("X"))


def test_orders_made_while_warming_up_are_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bars("X", ["10", "11", "12", "13", "14", "15"])
    settings: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
    }

    class SellsAtOnce(Strategy):
        def on_bar(self, bar: Bar, ctx: Any) -> None:
            if ctx.position("X") > 0 and not ctx.open_quantity("X"):
                ctx.sell("X", ctx.position("X"))
            elif not ctx.position("X") and not ctx.open_quantity("X"):
                ctx.buy("X", 1)

    first = tradeloom.backtest(settings, strategies={"s": SellsAtOnce()}, events=data[:3])
    assert first.fill_count == 2  # bought at the second bar's open, sold at the third's

    eager = Eager()
    with caplog.at_level(logging.INFO, logger="tradeloom.pipeline"):
        second = tradeloom.backtest(settings, strategies={"s": eager}, events=data, resume=True)
    assert eager.started == (data[0].ts, True)  # where the data starts, as the first run
    assert eager.seen == [(bar.ts, True) for bar in data[:3]] + [
        (bar.ts, False) for bar in data[3:]
    ]
    # Flat all through the warm-up (the stored state is flat): a buy on each of its three
    # bars. The one on its last bar counts as open while warming up (it may be sent). The
    # stored state holds a fill of X at that time (the sell, from an order made before), and
    # records that the first run's buy made then was waiting at the executor when it ended:
    # that order is placed again, with Eager's buy of that bar as its signal, and fills on the
    # fourth bar; the two buys before are not sent.
    assert len(eager.not_sent) == 3
    assert eager.open_while_warming_up == [0, 0, 1]
    assert [fill.ts for fill in second.fills] == [data[3].ts]
    assert second.fills[0].signal_id == eager.not_sent[2].event_id
    assert second.fill_count == 1 and second.rejection_count == 0
    assert (
        "(2 signal(s) made on them not sent; 1 order(s) and 0 signal(s) in flight when the "
        "state was stored placed again)"
    ) in caplog.text


def test_a_strategy_failing_while_warming_up_fails_the_run_with_its_name(tmp_path: Path) -> None:
    data = bars("X", ["10", "11", "12", "13"])
    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    tradeloom.backtest(settings, strategies={"s": Strategy()}, events=data[:2])

    class Fails(Strategy):
        def on_bar(self, bar: Bar, ctx: Any) -> None:
            raise RuntimeError("indicator broke")

    with pytest.raises(tradeloom.errors.StrategyError, match="strategy 's' raised on bar"):
        tradeloom.backtest(settings, strategies={"s": Fails()}, events=data, resume=True)


class SlowToWarm(Strategy):
    """A millisecond a bar while warming up (a heavy indicator)."""

    def __init__(self) -> None:
        self.warmed_on = 0

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if ctx.warming_up:
            self.warmed_on += 1
            time.sleep(0.001)


@pytest.mark.parametrize("feed_kind", ["plain", "async"])
def test_a_long_warm_up_can_be_interrupted(tmp_path: Path, feed_kind: str) -> None:
    data = bars("X", [str(100 + day % 7) for day in range(3100)])
    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    tradeloom.backtest(settings, strategies={"s": Strategy()}, events=data[:3000])
    strategy = SlowToWarm()
    given: dict[str, Any] = (
        {"events": data} if feed_kind == "plain" else {"feed": AsyncEvents(data)}
    )
    pipeline = tradeloom.Pipeline(
        tradeloom.make_settings(settings),
        mode="backtest",
        strategies={"s": strategy},
        resume=True,
        **given,
    )

    async def interrupted() -> None:
        with anyio.move_on_after(0.3):  # as Ctrl-C does: the run is cancelled where it pauses
            await pipeline.run()

    anyio.run(interrupted)
    # Three seconds of warming up, cut short at a pause between two blocks.
    assert 0 < strategy.warmed_on < 3000
    assert pipeline.result.interrupted is not None and pipeline.result.market_events == 0


class FailsOn(SmaCross):
    """sma_cross (quantity 10) that raises on the bar of ``day``."""

    def __init__(self, day: datetime) -> None:
        super().__init__(quantity=Decimal(10))
        self.day = day

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if bar.ts == self.day:
            raise RuntimeError("a bug, fixed before resuming")
        super().on_bar(bar, ctx)


def _orcl(data: Path, state: Path, fill_at: str = "next") -> dict[str, Any]:
    config = orcl_config(data, state)
    config["executor"]["params"]["fill_at"] = fill_at
    return config


def test_resuming_after_a_strategy_failed_on_a_bar_it_would_have_traded_on(
    tmp_path: Path, shared_data: Path
) -> None:
    # The strategy raised on the bar of a crossing: the stored state is stamped with that bar,
    # so the resumed run skips it. Its warm-up makes the decision again, and the order, which
    # never reached the executor, is sent as the run goes on.
    data = shared_data / "orcl-1995-2014.txt"
    whole = tradeloom.backtest(_orcl(data, tmp_path / "whole.db"))
    fill = whole.fills[100]
    bar_times = [f.ts for f in whole.fills]
    signal_bar = max(t for t in _bar_times(data) if t < fill.ts)
    assert signal_bar not in bar_times, "the data must not fill on the failing bar"
    config = _orcl(data, tmp_path / "state.db")
    del config["strategies"]
    with pytest.raises(tradeloom.errors.StrategyError, match="a bug, fixed before resuming"):
        tradeloom.backtest(config, strategies={"sma_cross": FailsOn(signal_bar)})
    resumed = tradeloom.backtest(_orcl(data, tmp_path / "state.db"), resume=True)
    stored = tradeloom.backtest(_orcl(data, tmp_path / "state.db"), resume=True)
    assert stored.fill_count == 0  # nothing after the resumed run: the state holds it all
    first_part = [f for f in whole.fills if f.ts <= signal_bar]
    assert trades(first_part + resumed.fills) == trades(whole.fills)
    assert resumed.final_equity == whole.final_equity


def _bar_times(data: Path) -> list[datetime]:
    feed = tradeloom.plugins.load_plugin_manager().create(
        "feed", "replay", {"path": str(data), "format": "yahoo", "instrument": "ORCL"}
    )
    return [event.ts for event in tradeloom.testing.feeds.collect_events(feed).events]


@pytest.mark.parametrize("fill_at", ["next", "last"])
def test_data_that_grows_at_bars_that_trade_resumes_as_one_run(
    tmp_path: Path, shared_data: Path, fill_at: str
) -> None:
    # Each part ends on a bar the strategy trades on: with fill_at = "next" its order was on
    # its way (rejected, "input ended") and is sent again as the next part begins; with
    # "last" it filled on that bar, in the stored state, and is not sent twice.
    full = shared_data / "orcl-1995-2014.txt"
    lines = full.read_text().splitlines(keepends=True)
    whole = tradeloom.backtest(_orcl(full, tmp_path / "whole.db", fill_at))
    times = _bar_times(full)
    deciding = {  # the bar each order was made on
        max(t for t in times if t < f.ts) if fill_at == "next" else f.ts for f in whole.fills
    }
    cuts = [times.index(t) + 1 for t in sorted(deciding)[40:200:40]]
    state = tmp_path / "state.db"
    fills: list[Fill] = []
    for number, cut in enumerate([*cuts, len(times)]):
        part = tmp_path / f"part-{number}.txt"
        part.write_text("".join(lines[: cut + 1]))  # the header and the days so far
        result = tradeloom.backtest(_orcl(part, state, fill_at), resume=number > 0)
        fills += result.fills
    assert trades(fills) == trades(whole.fills)
    assert result.final_equity == whole.final_equity


class AtTheLastTime(Strategy):
    """Trades X only on the bars of ``at`` (of X and of Y), in one of three ways."""

    def __init__(self, how: str, at: datetime) -> None:
        self.how, self.at = how, at

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if bar.ts != self.at:
            return
        if self.how == "guarded":  # on X's bar and on Y's, one order: open_quantity counts
            if ctx.position("X") + ctx.open_quantity("X") == 0:
                ctx.buy("X", 1)
        elif self.how == "limit and market" and bar.instrument == "X":
            ctx.buy("X", 10, limit_price=Decimal(1))  # far below the market: it rests
            ctx.buy("X", 10)
        elif self.how == "retry" and bar.instrument == "X":
            ctx.buy("X", 100)  # refused by max_order_notional
        elif self.how == "replaced" and bar.instrument == "X":
            assert ctx.cancel(ctx.buy("X", 3, limit_price=Decimal(1)))  # never sent
            ctx.buy("X", 2)

    def on_rejection(self, rejection: Any, ctx: Any) -> None:
        if self.how == "retry":
            ctx.buy("X", 10)


def drop_open_orders_record(state: Path) -> None:
    """Leave the state as a back end without metadata, or an older tradeloom, leaves it."""
    with contextlib.closing(sqlite3.connect(state)) as conn, conn:
        deleted = conn.execute(
            "DELETE FROM tradeloom_metadata WHERE key = 'in_flight_orders'"
        ).rowcount
    assert deleted == 1


@pytest.mark.parametrize("record", ["recorded", "not recorded"])
@pytest.mark.parametrize("fill_at", ["next", "last"])
@pytest.mark.parametrize("how", ["guarded", "limit and market", "retry", "replaced"])
def test_orders_of_the_stored_states_last_time_are_not_sent_twice(
    tmp_path: Path, how: str, fill_at: str, record: str
) -> None:
    data = merge(
        bars("X", [str(100 + i) for i in range(6)]), bars("Y", [str(50 + i) for i in range(6)])
    )
    last_time = data[5].ts  # the third time; two bars (X, Y) at each
    settings: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": fill_at}},
        "validators": [{"name": "max_order_notional", "params": {"limit": "5000"}}],
    }

    def run(state: str, events: list[Bar], resume: bool = False) -> Any:
        persistence = {"name": "sqlite", "params": {"path": str(tmp_path / state)}}
        return tradeloom.backtest(
            {**settings, "persistence": persistence},
            events=events,
            strategies={"s": AtTheLastTime(how, last_time)},
            resume=resume,
        )

    whole = run("whole.db", data)
    first = run("state.db", data[:6])
    if record == "not recorded":  # then the state's fills at that time decide: see the docs
        drop_open_orders_record(tmp_path / "state.db")
    second = run("state.db", data, resume=True)
    assert whole.fills, "the strategy must trade"
    assert trades(first.fills + second.fills) == trades(whole.fills)
    assert second.final_equity == whole.final_equity


class FailsOnAPrice(PaperTrader):
    """The paper trader, failing on the price of the bar at ``at``."""

    at: datetime | None = None

    def on_market(self, event: Any) -> None:
        if event.ts == self.at:
            raise RuntimeError("cannot take this price")
        super().on_market(event)


class FailingTraderPlugin:
    @hookimpl
    def tradeloom_register_executors(self) -> dict[str, Any]:
        return {"fails_on_a_price": FailsOnAPrice}


def test_an_executor_failing_on_the_warm_ups_last_price_is_its_own_error(tmp_path: Path) -> None:
    # The warm-up's last prices go to the executor before the run goes on: an error there is
    # the execution stage's, not the feed's.
    data = bars("X", ["10", "11", "12", "13"])
    state = {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}
    tradeloom.backtest({"persistence": state}, strategies={"s": Eager()}, events=data[:2])
    FailsOnAPrice.at = data[1].ts
    with pytest.raises(tradeloom.errors.StageError) as info:
        tradeloom.backtest(
            {"persistence": state, "executor": {"name": "fails_on_a_price"}},
            strategies={"s": Eager()},
            events=data,
            resume=True,
            plugins=[FailingTraderPlugin()],
        )
    assert not isinstance(info.value, tradeloom.errors.FeedError)
    assert str(info.value).startswith("execution stage failed on bar ")
    assert "cannot take this price" in str(info.value)


class TurnsOver(Strategy):
    """Long or flat on X, turning over on every bar once its last order came back: with
    ``fill_at = "next"`` every bar brings the fill of the order made on the bar before, and
    the strategy makes a new order on it."""

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if ctx.open_quantity("X"):
            return
        if ctx.position("X"):
            ctx.sell("X", 1)
        else:
            ctx.buy("X", 1)


@pytest.mark.parametrize("how", ["data that grew", "a stop"])
def test_an_order_made_at_the_last_time_beside_a_fill_is_sent_when_the_run_goes_on(
    tmp_path: Path, how: str
) -> None:
    # The state's last bar holds the fill of the order made on the bar before, and the order
    # made on it never reached the executor: which of the two had an outcome is stored with
    # the state, so the resumed run sends the second, as a run that never stopped does.
    data = bars("X", [str(100 + i % 7) for i in range(2 * CUT + 40)])
    settings: dict[str, Any] = {"executor": {"name": "paper", "params": {"fill_at": "next"}}}

    def run(state: str, resume: bool = False, **given: Any) -> Any:
        persistence = {"name": "sqlite", "params": {"path": str(tmp_path / state)}}
        return tradeloom.backtest(
            {**settings, "persistence": persistence},
            strategies={"s": TurnsOver()},
            resume=resume,
            **given,
        )

    whole = run("whole.db", events=data)
    assert len(whole.fills) == len(data) - 1  # a fill on every bar after the first
    # A plain feed's run stops at the end of a block of events.
    cuts = [CUT, 2 * CUT] if how == "a stop" else [5, 6, 17, CUT + 3]
    fills: list[Fill] = []
    for number, cut in enumerate([*cuts, len(data)]):
        if how == "a stop" and cut < len(data):
            stop = StopAt(data[cut - 1].ts)
            result = run("state.db", number > 0, events=data, plugins=[stop])
        else:
            result = run("state.db", number > 0, events=data[:cut])
        assert result.market_events == cut - (cuts[number - 1] if number else 0)
        fills += result.fills
    assert trades(fills) == trades(whole.fills)
    assert result.final_equity == whole.final_equity


def test_without_a_record_an_order_made_beside_a_fill_at_the_last_time_is_not_sent(
    tmp_path: Path,
) -> None:
    # A state stored by an older tradeloom, or by a back end that keeps no metadata: the
    # state's fill at its last time may be the outcome of the order made then, so that order
    # is not sent (it could fill twice), and the run goes on without it.
    data = bars("X", [str(100 + i % 7) for i in range(12)])
    settings: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "state.db")}},
    }
    first = tradeloom.backtest(settings, strategies={"s": TurnsOver()}, events=data[:6])
    assert [fill.ts for fill in first.fills][-1] == data[5].ts
    drop_open_orders_record(tmp_path / "state.db")
    second = tradeloom.backtest(settings, strategies={"s": TurnsOver()}, events=data, resume=True)
    # The sell made on the sixth bar is lost; the strategy sells on the seventh instead.
    assert second.fills[0].ts == data[7].ts


def test_open_orders_of_a_strategy_the_resumed_run_does_not_have_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bars("X", [str(100 + i % 7) for i in range(12)])
    settings: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "state.db")}},
    }
    tradeloom.backtest(settings, strategies={"old": TurnsOver()}, events=data[:6])
    with caplog.at_level(logging.WARNING, logger="tradeloom.pipeline"):
        second = tradeloom.backtest(
            settings, strategies={"new": TurnsOver()}, events=data, resume=True
        )
    assert (
        "the stored state has 1 order(s) in flight of strategies this run does not have "
        "('old'): not placed again"
    ) in caplog.text
    assert all(fill.strategy_id == "new" for fill in second.fills)


class CancelAt:
    """Cancels the run's task at the given market time, as Ctrl-C or SIGTERM does: the run
    stops at its next pause."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    @hookimpl
    def tradeloom_event_observed(self, stage: str, direction: str, event: Any) -> None:
        if stage == "feed" and event.ts == self.at:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()


def test_an_interrupted_backtest_resumes_as_one_that_never_stopped(tmp_path: Path) -> None:
    data = bars("X", [str(100 + i % 7) for i in range(CUT + 40)])
    settings = make_settings(
        {
            "executor": {"name": "paper", "params": {"fill_at": "next"}},
            "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "state.db")}},
        }
    )
    whole = tradeloom.backtest(
        {"executor": {"name": "paper", "params": {"fill_at": "next"}}},
        strategies={"s": TurnsOver()},
        events=data,
    )
    interrupted = Pipeline(
        settings,
        mode="backtest",
        strategies={"s": TurnsOver()},
        events=data,
        plugins=[CancelAt(data[10].ts)],  # stops at the end of the first block
    )
    with pytest.raises(BaseException) as info:
        anyio.run(interrupted.run)
    assert isinstance(info.value, asyncio.CancelledError | KeyboardInterrupt)
    assert interrupted.result.market_events == CUT
    assert interrupted.result.fills[-1].ts == data[CUT - 1].ts  # a fill, and an order made then
    resumed = tradeloom.backtest(settings, strategies={"s": TurnsOver()}, events=data, resume=True)
    assert trades(interrupted.result.fills + resumed.fills) == trades(whole.fills)
    assert resumed.final_equity == whole.final_equity


def resumed_at(
    tmp_path: Path, strategy: Callable[[], Strategy], data: list[Any], cut: int, **settings: Any
) -> tuple[Any, Any, Any]:
    """An uninterrupted run, then a run on ``data[:cut]`` and one resumed on all of it."""
    settings.setdefault("executor", {"name": "paper", "params": {"fill_at": "next"}})

    def run(state: str, events: list[Any], resume: bool = False) -> Any:
        persistence = {"name": "sqlite", "params": {"path": str(tmp_path / state)}}
        return tradeloom.backtest(
            {**settings, "persistence": persistence},
            strategies={"s": strategy()},
            events=events,
            resume=resume,
        )

    return run("whole.db", data), run("state.db", data[:cut]), run("state.db", data, True)


class BuysYOnX(Strategy):
    """Buys Y on X's tick at ``at``: Y has no tick then, so the order waits for Y's next."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def on_tick(self, tick: Any, ctx: Any) -> None:
        if tick.instrument == "X" and tick.ts == self.at:
            ctx.buy("Y", 1)


def test_a_market_order_waiting_for_its_instruments_next_price_is_placed_again(
    tmp_path: Path,
) -> None:
    # Made before the state's last time, for an instrument with no price since: the first run
    # ended with it waiting at the executor, and it was lost on resume.
    data = merge(
        ticks("X", [str(100 + i) for i in range(10)]),  # every second
        ticks("Y", ["50", "51", "52", "53"], interval=timedelta(seconds=3)),
    )
    at = data[0].ts + timedelta(seconds=4)
    cut = sum(1 for event in data if event.ts <= at + timedelta(seconds=1))
    whole, first, second = resumed_at(tmp_path, lambda: BuysYOnX(at), data, cut)
    assert [(f.instrument, f.price) for f in whole.fills] == [("Y", Decimal(52))]
    assert [r.reason for r in first.rejections] == ["input ended before the order could fill"]
    assert trades(first.fills + second.fills) == trades(whole.fills)
    assert second.final_equity == whole.final_equity


class ReactsOnFill(Strategy):
    """Buys 1 on the first bar; when that fills (on the second), sells 1 from ``on_fill``, and
    buys ``then`` on the second bar."""

    def __init__(self, data: list[Bar], then: int) -> None:
        self.data, self.then = data, then

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if bar.ts == self.data[0].ts:
            ctx.buy("X", 1)
        elif bar.ts == self.data[1].ts and self.then:
            ctx.buy("X", self.then)

    def on_fill(self, fill: Fill, ctx: Any) -> None:
        if fill.ts == self.data[1].ts:
            ctx.sell("X", 1) if self.then else ctx.buy("X", 10)


def test_orders_in_flight_are_placed_again_in_order_without_being_judged_again(
    tmp_path: Path,
) -> None:
    # The sell made in on_fill comes before the buy of the same bar: sent after it, max_position
    # refused the buy (position 1 + 2 over 2).
    data = bars("X", ["100", "101", "102", "103"])
    whole, first, second = resumed_at(
        tmp_path,
        lambda: ReactsOnFill(data, then=2),
        data,
        2,
        validators=[{"name": "max_position", "params": {"limit": "2"}}],
    )
    assert [(f.side.value, f.quantity) for f in whole.fills[1:]] == [("sell", 1), ("buy", 2)]
    assert trades(first.fills + second.fills) == trades(whole.fills)
    assert not second.rejections and second.final_equity == whole.final_equity

    # The buy made in on_fill passed max_order_notional at the price of its time (10 x 100);
    # judged again at the last bar's close it was refused (10 x 110).
    data = bars("X", ["100", "110", "111", "112"])
    whole, first, second = resumed_at(
        tmp_path / "notional",
        lambda: ReactsOnFill(data, then=0),
        data,
        2,
        validators=[{"name": "max_order_notional", "params": {"limit": "1000"}}],
    )
    assert [(f.side.value, f.quantity) for f in whole.fills] == [("buy", 1), ("buy", 10)]
    assert trades(first.fills + second.fills) == trades(whole.fills)
    assert not second.rejections and second.final_equity == whole.final_equity


class RestingBid(Strategy):
    """Bids for X below the market on the first bar, once."""

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if not ctx.position("X") and not ctx.open_quantity("X") and not ctx.warming_up:
            ctx.buy("X", 1, limit_price=Decimal(95))


def test_a_resting_limit_order_made_before_the_last_time_is_placed_again(tmp_path: Path) -> None:
    data = bars("X", ["100", "99", "98", "97", "96", "94", "100"])
    for cut in (2, 3, 5):
        whole, first, second = resumed_at(tmp_path / str(cut), RestingBid, data, cut)
        assert [(f.ts, f.price) for f in whole.fills] == [(data[5].ts, Decimal(95))]
        assert trades(first.fills + second.fills) == trades(whole.fills)
        assert second.final_equity == whole.final_equity


class Bracket(Strategy):
    """Enters on one bar with a take-profit limit above, a day order: cancelled on the next bar
    if it did not fill. With ``find_them``, what it cancels is what ``ctx.open_signals()``
    lists, not the signal it kept."""

    def __init__(self, entry: datetime, find_them: bool) -> None:
        self.entry, self.find_them = entry, find_them
        self.take_profit: Any = None

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        if self.find_them:
            for signal in ctx.open_signals("X"):
                if signal.limit_price is not None and not ctx.warming_up:
                    ctx.cancel(signal)
        elif self.take_profit is not None:
            ctx.cancel(self.take_profit)
            self.take_profit = None
        if bar.ts == self.entry and ctx.position("X") == 0:
            ctx.buy("X", 1)  # fill_at = "last": filled at once
            self.take_profit = ctx.sell("X", 1, limit_price=bar.close * Decimal("1.05"))


@pytest.mark.parametrize("find_them", [False, True])
def test_a_strategy_finds_the_orders_carried_over_among_its_open_signals(
    tmp_path: Path, find_them: bool
) -> None:
    # The warm-up sees the stored position, which holds the entry filled on the last bar, so
    # the strategy does not make its take-profit again: the order carried over is one it never
    # saw. Cancelling the signal it kept, it cannot cancel that order, which then fills; it
    # finds it among its open signals.
    data = bars("X", ["100", "100", "101", "100", "104", "107", "108"])
    whole, first, second = resumed_at(
        tmp_path,
        lambda: Bracket(data[1].ts, find_them),
        data,
        2,
        executor={"name": "paper", "params": {"fill_at": "last"}},
    )
    assert [f.side.value for f in whole.fills] == ["buy"]
    resumed = trades(first.fills + second.fills)
    assert (resumed == trades(whole.fills)) is find_them
    assert second.final_equity == whole.final_equity or not find_them
