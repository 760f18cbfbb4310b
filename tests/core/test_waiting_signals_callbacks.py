"""Signals waiting for a first price, and the strategy callbacks their verdicts run.

In one process a verdict (a fill, a rejection) reaches the strategy at once, while the risk
stage is still releasing, expiring or settling the signals that waited: a callback that
cancels one of them, or sends another, must find the wait as it is. Every signal ends in
exactly one fill or one rejection, and signals are judged in the order they were sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from tradeloom import Strategy
from tradeloom.events import Rejection, Signal
from tradeloom.testing import bars, run_strategy, ticks


class CancelsTheSecondWhenTheFirstIsRefused(Strategy):
    """Two buys of B, which has no price yet; when the first is refused, the second is
    cancelled (and, with ``resend``, one more buy is sent)."""

    def __init__(self, resend: bool = False) -> None:
        self.resend = resend
        self.sent: list[Signal] = []
        self.told: list[tuple[str, str]] = []
        self.open_at_stop: Any = None

    def on_start(self, ctx: Any) -> None:
        self.sent += [ctx.buy("B", 1), ctx.buy("B", 1)]

    def on_rejection(self, rejection: Rejection, ctx: Any) -> None:
        self.told.append((str(rejection.signal.event_id), rejection.validator))
        if rejection.signal.event_id == self.sent[0].event_id:
            ctx.cancel(self.sent[1])
            if self.resend:
                self.sent.append(ctx.buy("B", 1))

    def on_stop(self, ctx: Any) -> None:
        self.open_at_stop = ctx.open_quantity("B")


def _outcomes(result: Any) -> Counter[str]:
    """How many outcomes each signal got: fills and rejections, by signal id."""
    return Counter(
        [str(fill.signal_id) for fill in result.fills]
        + [str(rejection.signal.event_id) for rejection in result.rejections]
    )


def test_a_cancel_from_the_rejection_of_an_expired_signal_cancels_the_next_one() -> None:
    strategy = CancelsTheSecondWhenTheFirstIsRefused()
    result = run_strategy(strategy, ticks("A", ["10", "10", "10"], interval=timedelta(seconds=100)))
    first, second = strategy.sent
    assert [(r.signal.event_id, r.validator) for r in result.rejections] == [
        (first.event_id, "pending"),
        (second.event_id, "cancel"),
    ]
    assert "before a first price" in result.rejections[1].reason
    assert strategy.open_at_stop == 0


def test_a_signal_sent_while_others_expire_gets_its_own_outcome() -> None:
    strategy = CancelsTheSecondWhenTheFirstIsRefused(resend=True)
    result = run_strategy(strategy, ticks("A", ["10", "10", "10"], interval=timedelta(seconds=100)))
    assert len(strategy.sent) == 3
    assert _outcomes(result) == Counter(str(signal.event_id) for signal in strategy.sent)
    assert strategy.open_at_stop == 0


def test_a_signal_cancelled_while_the_others_are_refused_at_the_end_has_one_outcome() -> None:
    strategy = CancelsTheSecondWhenTheFirstIsRefused()
    result = run_strategy(strategy, ticks("A", ["10", "10"]))  # B never trades
    first, second = strategy.sent
    assert [(r.signal.event_id, r.validator) for r in result.rejections] == [
        (first.event_id, "pending"),
        (second.event_id, "cancel"),
    ]
    assert result.rejection_count == 2


class CancelsWhileReleased(Strategy):
    """A limit buy of A that the price band refuses at A's first price, and a market buy
    that its refusal cancels; one more buy on the second bar."""

    def __init__(self) -> None:
        self.bars_seen = 0
        self.cancelled: Any = None

    def on_start(self, ctx: Any) -> None:
        self.first = ctx.buy("A", 1, limit_price="5")
        self.second = ctx.buy("A", 1)

    def on_rejection(self, rejection: Rejection, ctx: Any) -> None:
        if rejection.signal.event_id == self.first.event_id:
            self.cancelled = ctx.cancel(self.second)

    def on_bar(self, bar: Any, ctx: Any) -> None:
        self.bars_seen += 1
        if self.bars_seen == 2:
            self.third = ctx.buy("A", 1)


def test_a_signal_cancelled_while_the_first_price_releases_it_is_not_counted_open() -> None:
    strategy = CancelsWhileReleased()
    result = run_strategy(
        strategy,
        bars("A", ["10", "11", "12", "13"]),
        validators=[
            {"name": "price_band", "params": {"max_deviation_bps": "100"}},
            {"name": "max_position", "params": {"limit": "1"}},
        ],
    )
    assert [(r.signal.event_id, r.validator) for r in result.rejections] == [
        (strategy.first.event_id, "price_band"),
        (strategy.second.event_id, "cancel"),
    ]
    assert "before a first price" in result.rejections[1].reason
    # The later buy is not refused by max_position for an order that never was.
    assert [fill.signal_id for fill in result.fills] == [strategy.third.event_id]


class BuysMoreOnTheFirstFill(Strategy):
    def __init__(self) -> None:
        self.sent: dict[str, Signal] = {}

    def on_start(self, ctx: Any) -> None:
        self.sent["first"] = ctx.buy("A", 1)
        self.sent["second"] = ctx.buy("A", 1)

    def on_fill(self, fill: Any, ctx: Any) -> None:
        if fill.signal_id == self.sent["first"].event_id:
            self.sent["third"] = ctx.buy("A", 1)


def test_signals_are_judged_in_the_order_they_were_sent_when_a_first_price_comes() -> None:
    strategy = BuysMoreOnTheFirstFill()
    result = run_strategy(
        strategy,
        bars("A", ["10", "11", "12"]),
        fill_at="last",
        validators=[{"name": "max_position", "params": {"limit": "2"}}],
    )
    names = {signal.event_id: name for name, signal in strategy.sent.items()}
    assert [names[fill.signal_id] for fill in result.fills] == ["first", "second"]
    assert [(names[r.signal.event_id], r.validator) for r in result.rejections] == [
        ("third", "max_position")
    ]


def test_a_signal_sent_while_the_others_are_refused_at_the_end_is_settled_too(
    caplog: Any,
) -> None:
    caplog.set_level(logging.WARNING)
    strategy = CancelsTheSecondWhenTheFirstIsRefused(resend=True)
    result = run_strategy(strategy, ticks("A", ["10", "10"]))  # B never trades
    assert len(strategy.sent) == 3
    assert _outcomes(result) == Counter(str(signal.event_id) for signal in strategy.sent)
    assert not [r for r in caplog.records if "no outcome" in r.getMessage()]


class BuysTwoMoreOnTheFirstFill(Strategy):
    def __init__(self) -> None:
        self.sent: list[Signal] = []

    def on_start(self, ctx: Any) -> None:
        self.sent += [ctx.buy("A", 1), ctx.buy("A", 1)]

    def on_fill(self, fill: Any, ctx: Any) -> None:
        if fill.signal_id == self.sent[0].event_id:
            self.sent += [ctx.buy("A", 1), ctx.buy("A", 1)]


def test_signals_sent_while_a_first_price_releases_others_do_not_count_as_waiting() -> None:
    # They have a price: the bound on signals waiting for one does not apply to them.
    strategy = BuysTwoMoreOnTheFirstFill()
    result = run_strategy(
        strategy,
        bars("A", ["10", "11", "12"]),
        fill_at="last",
        config={"pending": {"max_signals": 2}},
    )
    assert [fill.signal_id for fill in result.fills] == [s.event_id for s in strategy.sent]
    assert result.rejections == []
