"""Strategies for the redpanda tests, loaded into role processes through
``[plugins] modules = ["redpanda_test_plugin"]`` (the test directory is on PYTHONPATH)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradeloom import Signal, Strategy, hookimpl
from tradeloom.events import MarketTick
from tradeloom.strategy import StrategyContext


class BuyEveryTick(Strategy):
    """Buys one unit on every tick: each tick must become exactly one fill, so counting fills
    shows lost and doubled ticks alike."""

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        ctx.buy(tick.instrument, 1)


class RestThenCancel(Strategy):
    """Per instrument: a limit buy at half the first price (it never fills), cancelled on the
    third tick, then one market buy on the fourth: the cancel must free the instrument."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.resting: dict[str, Signal] = {}

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        count = self.seen[tick.instrument] = self.seen.get(tick.instrument, 0) + 1
        if count == 1:
            limit = tick.last_price / 2
            self.resting[tick.instrument] = ctx.buy(tick.instrument, 1, limit_price=limit)
        elif count == 3:
            assert ctx.cancel(self.resting[tick.instrument])
        elif count == 4 and ctx.open_quantity(tick.instrument) == Decimal(0):
            ctx.buy(tick.instrument, 1)


class RestBelow(Strategy):
    """Per instrument, on its first tick: one limit buy one unit below that price."""

    def __init__(self) -> None:
        self.sent: set[str] = set()

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if tick.instrument not in self.sent:
            self.sent.add(tick.instrument)
            ctx.buy(tick.instrument, 1, limit_price=tick.last_price - 1)


class BuyListOnce(Strategy):
    """On the first tick of ``trigger``: one buy of each of ``instruments``, in that order."""

    def __init__(self, trigger: str = "AAA", instruments: list[str] | None = None) -> None:
        self.trigger = trigger
        self.instruments = instruments or []
        self.done = False

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if tick.instrument == self.trigger and not self.done:
            self.done = True
            for instrument in self.instruments:
                ctx.buy(instrument, 1)


class BuyRestCancel(Strategy):
    """On the first tick of ``trigger``: a market buy of ``held`` and a limit buy of ``rested``
    at 1 (it never fills at prices about 100); on its second tick: the cancel of that limit
    buy."""

    def __init__(self, trigger: str = "AAA", held: str = "", rested: str = "") -> None:
        self.trigger, self.held, self.rested = trigger, held, rested
        self.triggers = 0
        self.resting: Signal | None = None

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if tick.instrument != self.trigger:
            return
        self.triggers += 1
        if self.triggers == 1:
            ctx.buy(self.held, 1)
            self.resting = ctx.buy(self.rested, 1, limit_price=Decimal(1))
        elif self.triggers == 2 and self.resting is not None:
            assert ctx.cancel(self.resting)


class BuysThenRaises(Strategy):
    """Buys one unit on each of the first two ticks, then raises on the third."""

    def __init__(self) -> None:
        self.ticks = 0

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.ticks += 1
        if self.ticks == 3:
            raise RuntimeError("the model lost its weights")
        ctx.buy(tick.instrument, 1)


@hookimpl
def tradeloom_register_strategies() -> Mapping[str, Any]:
    return {
        "buys_then_raises": BuysThenRaises,
        "buy_rest_cancel": BuyRestCancel,
        "buy_every_tick": BuyEveryTick,
        "rest_then_cancel": RestThenCancel,
        "rest_below": RestBelow,
        "buy_list_once": BuyListOnce,
    }
