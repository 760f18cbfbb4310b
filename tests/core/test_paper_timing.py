"""The paper trader across processes: the executor may lag behind the strategy."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
import uuid6

from tradeloom.components import ExecutionContext
from tradeloom.events import Event, Fill, Order, OrderType, Side
from tradeloom.ids import derived_uuid7
from tradeloom.runtime.clock import WallClock
from tradeloom.testing import ticks
from tradeloom_paper.trader import PaperTrader


class Ids:
    def new_id(self):  # type: ignore[no-untyped-def]
        return uuid6.uuid7()


def trader(fill_at: str) -> tuple[PaperTrader, list[Event]]:
    emitted: list[Event] = []
    paper = PaperTrader(fill_at=fill_at)  # type: ignore[arg-type]
    paper.bind(
        ExecutionContext(
            ids=Ids(), clock=WallClock(), emit=emitted.append, logger=logging.getLogger("test")
        )
    )
    return paper, emitted


def order(decided_at) -> Order:  # type: ignore[no-untyped-def]
    return Order(
        event_id=uuid6.uuid7(),
        ts=WallClock().now(),
        signal_id=uuid6.uuid7(),
        strategy_id="s",
        instrument="X",
        side=Side.BUY,
        quantity=Decimal(1),
        market_ts=decided_at,
    )


def test_a_lagging_executor_fills_only_after_what_the_strategy_had_seen() -> None:
    prices = ticks("X", ["10", "11", "12", "13"], interval=timedelta(seconds=1))
    paper, emitted = trader("next")
    paper.on_market(prices[0])
    paper.on_order(order(decided_at=prices[2].ts))  # the strategy had seen tick 3
    paper.on_market(prices[1])
    paper.on_market(prices[2])
    assert emitted == []  # never a price from before the decision, nor the decision's own
    paper.on_market(prices[3])
    assert [(type(e), e.price) for e in emitted] == [(Fill, Decimal(13))]  # type: ignore[attr-defined]


def test_an_order_minted_before_the_trader_was_made_is_judged_by_its_decision_alone() -> None:
    # An order read again by a restarted execution process (or one that waited while none
    # ran) comes in no set order with the prices of other partitions: a later price of
    # another instrument seen first does not make it skip the prices after its decision.
    prices = ticks("X", ["10", "11", "12"], interval=timedelta(seconds=1))
    later = ticks("Y", ["50"], start=prices[2].ts + timedelta(hours=1))
    backlog = order(decided_at=prices[0].ts).model_copy(
        update={"event_id": derived_uuid7(b"an order of the process before", 1_000)}
    )
    fresh = order(decided_at=prices[0].ts).model_copy(
        update={"instrument": "Z", "signal_id": uuid6.uuid7()}
    )
    paper, emitted = trader("next")
    paper.on_market(later[0])
    paper.on_order(backlog)
    paper.on_order(fresh)
    paper.on_market(prices[1])
    assert [(e.instrument, e.price) for e in emitted] == [("X", Decimal(11))]  # type: ignore[attr-defined]
    paper.on_market(ticks("Z", ["7"], start=prices[2].ts)[0])
    assert len(emitted) == 1  # a fresh order waits for a price after what the trader had seen
    paper.on_market(ticks("Z", ["8"], start=later[0].ts + timedelta(seconds=1))[0])
    assert [(e.instrument, e.price) for e in emitted] == [("X", Decimal(11)), ("Z", Decimal(8))]  # type: ignore[attr-defined]


def test_fill_at_last_fills_at_once_at_the_latest_known_price() -> None:
    prices = ticks("X", ["10", "11", "12"], interval=timedelta(seconds=1))
    paper, emitted = trader("last")
    paper.on_market(prices[0])
    paper.on_market(prices[1])
    paper.on_order(order(decided_at=prices[1].ts))  # a live trader fills now, at its price
    assert [e.price for e in emitted] == [Decimal(11)]  # type: ignore[attr-defined]
    paper.on_order(order(decided_at=None))  # no decision time: the latest price too
    assert [e.price for e in emitted] == [Decimal(11), Decimal(11)]  # type: ignore[attr-defined]


def test_fill_at_last_behind_the_strategy_waits_for_the_price_it_decided_on() -> None:
    # Across processes the execution process may lag: the strategy decided on tick 3 while
    # this trader has seen tick 1 only. Tick 1's price is older than the decision: the order
    # fills at the first price stamped at or after it, never at the stale one.
    prices = ticks("X", ["10", "11", "12", "13"], interval=timedelta(seconds=1))
    paper, emitted = trader("last")
    paper.on_market(prices[0])
    paper.on_order(order(decided_at=prices[2].ts))
    assert emitted == []
    paper.on_market(prices[1])
    assert emitted == []  # still before the decision
    paper.on_market(prices[2])
    assert [e.price for e in emitted] == [Decimal(12)]  # type: ignore[attr-defined]


def test_fill_at_last_without_a_price_waits_for_the_decided_time() -> None:
    prices = ticks("X", ["10", "11", "12"], interval=timedelta(seconds=1))
    paper, emitted = trader("last")
    paper.on_order(order(decided_at=prices[1].ts))
    paper.on_market(prices[0])
    assert emitted == []  # a price from before the decision
    paper.on_market(prices[1])
    assert [e.price for e in emitted] == [Decimal(11)]  # type: ignore[attr-defined]


def test_fill_at_last_behind_waits_for_its_own_instrument_not_the_fastest_one() -> None:
    # Another instrument's prices may be far ahead of this one's (its partition read first):
    # the order waits for the first price of its own stamped at or after the decision.
    x = ticks("X", ["10", "11", "12", "13"], interval=timedelta(seconds=10))
    y = ticks("Y", ["50"], start=x[3].ts)
    paper, emitted = trader("last")
    paper.on_market(x[0])
    paper.on_market(y[0])  # the trader's latest time is now X's fourth
    paper.on_order(order(decided_at=x[1].ts))
    assert emitted == []
    paper.on_market(x[1])
    assert [e.price for e in emitted] == [Decimal(11)]  # type: ignore[attr-defined]


def test_fill_at_last_without_a_price_of_its_own_waits_for_the_decision_too() -> None:
    x = ticks("X", ["10", "11"], interval=timedelta(seconds=10))
    y = ticks("Y", ["50"], start=x[1].ts + timedelta(hours=1))
    paper, emitted = trader("last")
    paper.on_market(y[0])
    paper.on_order(order(decided_at=x[0].ts))
    paper.on_market(x[0])
    assert [e.price for e in emitted] == [Decimal(10)]  # type: ignore[attr-defined]


def test_orders_from_a_replay_run_live_are_judged_in_data_time() -> None:
    # Data from years ago, orders stamped now: the order's wall-clock ts must not matter.
    prices = ticks("X", ["10", "11"])
    paper, emitted = trader("next")
    paper.on_market(prices[0])
    paper.on_order(order(decided_at=prices[0].ts))
    paper.on_market(prices[1])
    assert [e.price for e in emitted] == [Decimal(11)]  # type: ignore[attr-defined]


def test_an_order_delivered_again_fills_once_within_the_dedupe_window() -> None:
    prices = ticks("X", ["10", "11", "12", "13"], interval=timedelta(seconds=1))
    emitted: list[Event] = []
    paper = PaperTrader(fill_at="last", dedupe_window=2)
    paper.bind(
        ExecutionContext(
            ids=Ids(), clock=WallClock(), emit=emitted.append, logger=logging.getLogger("test")
        )
    )
    paper.on_market(prices[0])
    first = order(decided_at=prices[0].ts)
    paper.on_order(first)
    paper.on_order(first)  # redelivered: still remembered
    assert len(emitted) == 1
    paper.on_order(order(decided_at=prices[0].ts))
    paper.on_order(order(decided_at=prices[0].ts))
    paper.on_order(first)  # two orders later it is forgotten, as configured
    assert len(emitted) == 4


def test_waiting_orders_of_moving_instruments_are_handed_over_and_taken_again() -> None:
    prices = ticks("X", ["10", "11", "12"], interval=timedelta(seconds=1))
    paper, emitted = trader("next")
    paper.on_market(prices[0])
    waiting = order(decided_at=prices[0].ts)
    other = order(decided_at=prices[0].ts).model_copy(update={"instrument": "Y"})
    paper.on_order(waiting)
    paper.on_order(other)
    assert paper.hand_over(lambda instrument: instrument == "X") == [waiting]
    paper.on_market(prices[1])
    assert emitted == []  # not filled here any more
    assert paper.hand_over(lambda instrument: False) == []
    # Should X come back to this process, its order (published again) is taken again.
    paper.on_order(waiting)
    paper.on_market(prices[2])
    assert [(e.order_id, e.price) for e in emitted] == [(waiting.event_id, Decimal(12))]  # type: ignore[attr-defined]
    assert paper.hand_over(lambda instrument: True) == [other]


def test_a_handed_over_order_keeps_its_placing_time_and_its_instruments_price_is_forgotten() -> (
    None
):
    prices = ticks("X", ["10", "11", "12"], interval=timedelta(seconds=1))
    paper, emitted = trader("last")
    paper.on_market(prices[1])
    limit = order(decided_at=prices[0].ts).model_copy(
        update={"order_type": OrderType.LIMIT, "limit_price": Decimal(5)}
    )
    paper.on_order(limit)  # rests: 11 is above the limit
    (handed,) = paper.hand_over(lambda instrument: True)
    # Placed when this trader had seen the second tick: another one fills it after that.
    assert handed.market_ts == prices[1].ts
    assert paper.last_price("X") is None  # no longer seen here: no stale price to fill at
    paper.on_order(limit)
    assert emitted == []  # waits for a price, as for an instrument never seen


@pytest.mark.parametrize("window", [-1, 1.5, True, "10"])
def test_a_dedupe_window_that_is_not_a_count_is_refused(window: object) -> None:
    with pytest.raises(ValueError, match="dedupe_window must be"):
        PaperTrader(dedupe_window=window)  # type: ignore[arg-type]


@pytest.mark.parametrize("param", ["commission_bps", "slippage_bps"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must be zero or more, got -1"),
        ("NaN", "must be a finite number, got NaN"),
        ("abc", "must be a number, got 'abc'"),
        (None, "must be a Decimal, an int or a numeric string, not None"),
        (True, "must be a number, not the boolean True"),
        (
            2.5,
            "must be a Decimal, an int or a numeric string, not the float 2.5 (floats are "
            'inexact; write it as a string, e.g. "2.5")',
        ),
        # A finite Decimal, but the fee on any fill would overflow and fail the run there.
        (
            "1e999999",
            "1E+999999 is out of range: a number must be below 1E+100000 and, unless zero, "
            "at least 1E-100000 in magnitude",
        ),
    ],
)
def test_bad_costs_are_refused_naming_the_parameter(
    param: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        PaperTrader(**{param: value})  # type: ignore[arg-type]
    assert str(caught.value) == f"{param} {message}"
