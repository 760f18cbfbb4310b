"""Strategies for the redpanda tests, loaded into role processes through
``[plugins] modules = ["redpanda_test_plugin"]`` (the test directory is on PYTHONPATH)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import Strategy, hookimpl
from tradeloom.events import MarketTick
from tradeloom.strategy import StrategyContext


class BuyEveryTick(Strategy):
    """Buys one unit on every tick: each tick must become exactly one fill, so counting fills
    shows lost and doubled ticks alike."""

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        ctx.buy(tick.instrument, 1)


@hookimpl
def tradeloom_register_strategies() -> Mapping[str, Any]:
    return {"buy_every_tick": BuyEveryTick}
