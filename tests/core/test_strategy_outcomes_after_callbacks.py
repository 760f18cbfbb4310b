"""A signal's fill or rejection reaches the strategy after the callback that sent it returns.

In one process the outcome can come back while the strategy is still inside ``ctx.buy()``
(``fill_at = "last"``, a validator's refusal): the book changes at once, but the strategy is
not re-entered.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tradeloom import Strategy
from tradeloom.events import Fill, MarketTick, Rejection
from tradeloom.strategy import StrategyContext
from tradeloom.testing import run_strategy, ticks

NO_SHORTS = [{"name": "no_short"}]


class Recorder(Strategy):
    """Sends ``orders`` (side, quantity) on the first tick and records what happens when."""

    def __init__(self, orders: list[tuple[str, str]], again_on_fill: bool = False) -> None:
        self.orders = orders
        self.again_on_fill = again_on_fill
        self.log: list[str] = []
        self.in_callback = False
        self.inflight: dict[Any, str] = {}
        self.position_after_send: list[Decimal] = []

    def _enter(self, name: str) -> None:
        assert not self.in_callback, f"{name} called while another callback was running"
        self.in_callback = True
        self.log.append(f"{name} start")

    def _leave(self, name: str) -> None:
        self.log.append(f"{name} end")
        self.in_callback = False

    def _send(self, ctx: StrategyContext, side: str, quantity: str) -> None:
        signal = (ctx.buy if side == "buy" else ctx.sell)("X", quantity)
        self.inflight[signal.event_id] = f"{side} {quantity}"
        self.position_after_send.append(ctx.position("X") + ctx.open_quantity("X"))
        self.log.append(f"sent {side} {quantity}")

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self._enter("tick")
        if self.orders:
            for side, quantity in self.orders:
                self._send(ctx, side, quantity)
            self.orders = []
        self._leave("tick")

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self._enter("fill")
        self.log.append(f"filled {self.inflight.pop(fill.signal_id)}")
        if self.again_on_fill:
            self.again_on_fill = False
            self._send(ctx, "sell", "1")
        self._leave("fill")

    def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
        self._enter("rejection")
        self.log.append(f"rejected {self.inflight.pop(rejection.signal.event_id)}")
        self._leave("rejection")


def _events(log: list[str]) -> list[str]:
    return [entry for entry in log if not entry.endswith((" start", " end"))]


def test_a_fill_at_the_last_price_reaches_on_fill_after_on_tick_returns() -> None:
    strategy = Recorder([("buy", "2"), ("buy", "3")])
    result = run_strategy(strategy, ticks("X", ["10", "11"]), fill_at="last")
    assert _events(strategy.log) == ["sent buy 2", "sent buy 3", "filled buy 2", "filled buy 3"]
    assert strategy.inflight == {}
    # The book changed at once: what is held plus what is open counts each order once.
    assert strategy.position_after_send == [Decimal(2), Decimal(5)]
    assert [fill.quantity for fill in result.fills] == [Decimal(2), Decimal(3)]


@pytest.mark.parametrize("fill_at", ["last", "next"])
def test_a_validators_refusal_reaches_on_rejection_after_on_tick_returns(fill_at: str) -> None:
    strategy = Recorder([("sell", "1"), ("buy", "1")])
    run_strategy(strategy, ticks("X", ["10", "11", "12"]), fill_at=fill_at, validators=NO_SHORTS)
    events = _events(strategy.log)
    assert events[:3] == ["sent sell 1", "sent buy 1", "rejected sell 1"]
    assert events[3:] == ["filled buy 1"]
    assert strategy.inflight == {}


def test_an_order_sent_from_on_fill_is_heard_of_after_on_fill_returns_in_order() -> None:
    strategy = Recorder([("buy", "1"), ("buy", "2")], again_on_fill=True)
    run_strategy(strategy, ticks("X", ["10", "11"]), fill_at="last")
    assert _events(strategy.log) == [
        "sent buy 1",
        "sent buy 2",
        "filled buy 1",
        "sent sell 1",
        "filled buy 2",
        "filled sell 1",
    ]
    assert strategy.inflight == {}


def test_each_strategy_hears_of_its_outcomes_before_the_next_strategy_runs() -> None:
    log: list[str] = []

    class Named(Strategy):
        def __init__(self, name: str, trades: bool) -> None:
            self.name, self.trades = name, trades

        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            log.append(f"{self.name} tick")
            if self.trades and not ctx.position("X"):
                ctx.buy("X", 1)

        def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
            log.append(f"{self.name} fill")

    strategies = {"a": Named("a", trades=True), "b": Named("b", trades=False)}
    run_strategy(strategies, ticks("X", ["10"]), fill_at="last")
    assert log == ["a tick", "a fill", "b tick"]
