"""A resumed backtest warms its strategies up on the events the stored state holds.

The strategies see those events (with ``ctx.warming_up`` set and their orders not sent), so
their indicators are as they were where the state ends, and the resumed run trades as one that
never stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from resume_support import orcl_config

import tradeloom
from tradeloom import Strategy, hookimpl
from tradeloom.components import Feed
from tradeloom.events import Bar, Fill
from tradeloom.testing import bars


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
    assert "strategies warmed up on the 2500 market event(s) the stored state holds" in (
        caplog.text
    )


class AsyncEvents(Feed):
    def __init__(self, events: list[Any]) -> None:
        self._events = events

    async def events(self, ctx: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for event in self._events:
            yield event


class StopAt:
    """Stops the run at the given market time (a Ctrl-C there, as a test can make one)."""

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

    def on_start(self, ctx: Any) -> None:
        self.started = (ctx.now(), ctx.warming_up)

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        assert ctx.now() == bar.ts  # the clock moves with the warm-up events too
        self.seen.append((bar.ts, ctx.warming_up))
        if not ctx.position("X") and not ctx.open_quantity("X"):
            signal = ctx.buy("X", 1)
            if ctx.warming_up:
                self.not_sent.append(signal)
                assert ctx.open_quantity("X") == 0
                assert not ctx.cancel(signal)


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
    # bars, none sent; the buy on the fourth bar is sent and fills on the fifth.
    assert len(eager.not_sent) == 3
    assert [fill.ts for fill in second.fills] == [data[4].ts]
    assert second.fill_count == 1 and second.rejection_count == 0
    assert "(3 signal(s) made on them not sent)" in caplog.text


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
