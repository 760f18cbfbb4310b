"""Position limits hold whichever open orders fill: a resting limit order on the other side,
which may never fill, makes no room (the risk stage's ``RiskView.position_range``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradeloom import Strategy
from tradeloom.events import Bar, Fill, Rejection
from tradeloom.strategy import StrategyContext
from tradeloom.testing import bars, run_strategy

D = Decimal


class Script(Strategy):
    """On the first bar, sends ``orders``: (side, quantity, limit price or None)."""

    def __init__(self, *orders: tuple[str, str, str | None]) -> None:
        self.orders = orders
        self.sent = False
        self.rejections: list[Rejection] = []
        self.fills: list[Fill] = []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if self.sent:
            return
        self.sent = True
        for side, quantity, limit in self.orders:
            send = ctx.buy if side == "buy" else ctx.sell
            send("X", quantity, limit_price=limit)

    def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
        self.rejections.append(rejection)

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.fills.append(fill)


def _run(strategy: Script, validator: dict[str, Any], fill_at: str = "next") -> Decimal:
    result = run_strategy(strategy, bars("X", ["100"] * 4), validators=[validator], fill_at=fill_at)
    position = result.snapshots["strategy"].positions.get("X")
    return position.quantity if position is not None else D(0)


def test_no_short_does_not_let_a_resting_buy_cover_a_sell() -> None:
    # The buy at 1 never fills: the sell would have left a short of 10.
    strategy = Script(("buy", "10", "1"), ("sell", "10", None))
    final = _run(strategy, {"name": "no_short"})
    assert strategy.fills == []
    refused = [r for r in strategy.rejections if r.validator == "no_short"]
    assert [(r.signal.side.value, r.signal.quantity) for r in refused] == [("sell", D(10))]
    assert final == 0


def test_max_position_does_not_let_a_resting_sell_make_room_for_a_buy() -> None:
    strategy = Script(("sell", "10", "1000"), ("buy", "20", None))
    final = _run(strategy, {"name": "max_position", "params": {"limit": "10"}})
    refused = [r for r in strategy.rejections if r.validator == "max_position"]
    assert [(r.signal.side.value, r.signal.quantity) for r in refused] == [("buy", D(20))]
    assert "position after order 20 would exceed limit 10" in refused[0].reason
    assert final == 0


def test_orders_in_flight_still_count_on_both_sides() -> None:
    # A market buy goes at the next price: selling it in the same callback is not short.
    for fill_at in ("next", "last"):
        strategy = Script(("buy", "10", None), ("sell", "10", None))
        final = _run(strategy, {"name": "no_short"}, fill_at=fill_at)
        assert [(f.side.value, f.quantity) for f in strategy.fills] == [
            ("buy", D(10)),
            ("sell", D(10)),
        ]
        assert strategy.rejections == [] and final == 0
