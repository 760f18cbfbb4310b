"""Orders on their way: a strategy can count what it sent and what has not come back yet.

Across processes an order may still be on its way (in a topic, or at an executor that is
restarting) when the strategy sees the next events; deciding on the filled position alone
sends the same order again. The executor here holds each order for a few events, as a lagging
execution process would.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

import uuid6

import tradeloom
from tradeloom import hookimpl
from tradeloom.events import Order, Rejection
from tradeloom.portfolio import Portfolio
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.strategy import StrategyContext
from tradeloom.testing import ticks
from tradeloom.testing.persistence import make_fill
from tradeloom_paper.trader import PaperTrader


class Ids:
    def new_id(self):  # type: ignore[no-untyped-def]
        return uuid6.uuid7()


def context() -> tuple[StrategyContext, list[Any]]:
    sent: list[Any] = []
    ctx = StrategyContext(
        "s", Portfolio("s", Decimal(1000)), {}, Ids(), SimulatedClock(), sent.append
    )
    return ctx, sent


def test_open_quantity_counts_signals_until_their_fill_or_rejection() -> None:
    ctx, sent = context()
    assert ctx.open_quantity("X") == 0
    buy = ctx.buy("X", 3)
    sell = ctx.sell("X", "1.5")
    other = ctx.buy("Y", 1)
    assert (ctx.open_quantity("X"), ctx.open_quantity("Y")) == (Decimal("1.5"), Decimal(1))
    ctx._resolve(buy.event_id)
    ctx._resolve(buy.event_id)  # delivered again: counted once
    assert ctx.open_quantity("X") == Decimal("-1.5")
    ctx._resolve(sell.event_id)
    ctx._resolve(other.event_id)
    assert (ctx.open_quantity("X"), ctx.open_quantity("Y")) == (0, 0)
    ctx._resolve(uuid6.uuid7())  # not this strategy's signal: nothing changes
    assert len(sent) == 3


def test_open_signals_are_the_signals_still_open_in_the_order_sent() -> None:
    ctx, _ = context()
    assert ctx.open_signals() == []
    buy, other, sell = ctx.buy("X", 3), ctx.buy("Y", 1), ctx.sell("X", 1, limit_price=9)
    assert ctx.open_signals() == [buy, other, sell]
    assert ctx.open_signals("X") == [buy, sell] and ctx.open_signals("Z") == []
    ctx._resolve(buy.event_id)
    assert ctx.open_signals() == [other, sell]
    assert ctx.open_signals("X")[0] is sell  # the very signal sent, for ctx.cancel()
    ctx._resolve(sell.event_id)
    ctx._resolve(other.event_id)
    assert ctx.open_signals() == []


class LaggingPaper(PaperTrader):
    """Paper trading at the last price, but each order arrives ``lag`` market events late."""

    def __init__(self, lag: int = 5) -> None:
        super().__init__(fill_at="last")
        self.lag = lag
        self.held: list[tuple[int, Order]] = []
        self.seen = 0

    def on_order(self, order: Order) -> None:
        self.held.append((self.seen + self.lag, order))

    def on_market(self, event: Any) -> None:
        super().on_market(event)
        self.seen += 1
        due = [order for at, order in self.held if at <= self.seen]
        self.held = [(at, order) for at, order in self.held if at > self.seen]
        for order in due:
            super().on_order(order)


class Lagging:
    @hookimpl
    def tradeloom_register_executors(self):  # type: ignore[no-untyped-def]
        return {"lagging_paper": LaggingPaper}


def test_sma_cross_sends_no_order_twice_while_one_is_on_its_way() -> None:
    # A zigzag: the fast average crosses the slow one every few ticks, so later crossings come
    # while the order of an earlier one is still held by the executor.
    prices = [str(100 + step) for step in [0, 2, 4, 1, -2, 3, 6, 2, -1, 4, 7, 3, 0, 5, 8] * 4]
    result = tradeloom.backtest(
        {
            "strategies": [
                {"name": "sma_cross", "id": "sma", "params": {"fast": 1, "slow": 3, "quantity": 2}}
            ],
            "executor": {"name": "lagging_paper", "params": {"lag": 4}},
        },
        events=ticks("X", prices, interval=timedelta(seconds=1)),
        plugins=[Lagging()],
    )
    position = Decimal(0)
    for fill in result.fills:
        position += fill.quantity if fill.side == "buy" else -fill.quantity
        assert position in (0, 2), f"went to {position} with fill {fill}"
    assert result.fill_count >= 4  # it did trade through the zigzag
    assert all(fill.quantity == 2 for fill in result.fills)


def test_a_rejected_signal_is_open_no_more() -> None:
    logging.getLogger("tradeloom").setLevel(logging.WARNING)
    ctx, _ = context()
    signal = ctx.sell("X", 2)
    rejection = Rejection(
        event_id=uuid6.uuid7(), ts=signal.ts, signal=signal, validator="v", reason="no"
    )
    fill = make_fill("s", instrument="X", side="sell", quantity="2", price="10")
    ctx._resolve(fill.signal_id)  # another signal's fill: this one stays open
    assert ctx.open_quantity("X") == -2
    ctx._resolve(rejection.signal.event_id)
    assert ctx.open_quantity("X") == 0


def test_a_sum_of_zero_with_signals_still_open_is_no_error() -> None:
    # A risk stage used to fail with a KeyError here: the zero sum was dropped while a buy and
    # a sell were still open, and closing the next one read it.
    ctx, _ = context()
    first, second, third = ctx.buy("X", 2), ctx.buy("X", 2), ctx.sell("X", 2)
    ctx._resolve(first.event_id)
    assert ctx.open_quantity("X") == 0
    ctx._resolve(second.event_id)
    assert ctx.open_quantity("X") == -2
    ctx._resolve(third.event_id)
    assert ctx.open_quantity("X") == 0


class DroppingPaper(PaperTrader):
    """Loses the first order it gets, as an execution process killed while holding it would."""

    def __init__(self) -> None:
        super().__init__(fill_at="last")
        self.dropped = False

    def on_order(self, order: Order) -> None:
        if not self.dropped:
            self.dropped = True
            return
        super().on_order(order)


class Dropping:
    @hookimpl
    def tradeloom_register_executors(self):  # type: ignore[no-untyped-def]
        return {"dropping_paper": DroppingPaper}


def test_sma_cross_never_goes_short_when_a_buy_never_comes_back() -> None:
    prices = [str(100 + step) for step in [0, 2, 4, 1, -2, 3, 6, 2, -1, 4, 7, 3, 0, 5, 8] * 4]
    result = tradeloom.backtest(
        {
            "strategies": [
                {"name": "sma_cross", "id": "sma", "params": {"fast": 1, "slow": 3, "quantity": 2}}
            ],
            "executor": {"name": "dropping_paper"},
        },
        events=ticks("X", prices, interval=timedelta(seconds=1)),
        plugins=[Dropping()],
    )
    # The lost buy stays open (it is counted until the strategy's process restarts), so the
    # strategy buys no more, and sells nothing it does not hold: it used to sell 2 from flat.
    assert result.fills == []
    assert "X" not in result.snapshots["sma"].positions
