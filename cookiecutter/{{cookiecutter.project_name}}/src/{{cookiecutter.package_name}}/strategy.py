"""An example strategy: a channel breakout, long or flat. Replace its rules with yours."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from tradeloom import Bar, MarketTick, Strategy, StrategyContext


class {{ cookiecutter.class_name }}(Strategy):
    """Buys ``quantity`` when the price closes above the highest of the previous ``lookback``
    prices while flat, and sells the whole position when it closes below the lowest of them.

    Parameters come from the ``params`` of the ``[[strategies]]`` entry; tradeloom checks them
    against this signature (types included) before the strategy is built.
    """

    def __init__(self, lookback: int = 20, quantity: Decimal = Decimal(1)) -> None:
        if lookback < 1:
            raise ValueError(f"lookback must be at least 1, got {lookback}")
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, got {quantity}")
        self.lookback = lookback
        self.quantity = Decimal(quantity)
        self._windows: dict[str, deque[Decimal]] = {}

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self._on_price(bar.instrument, bar.close, ctx)

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self._on_price(tick.instrument, tick.last_price, ctx)

    def _on_price(self, instrument: str, price: Decimal, ctx: StrategyContext) -> None:
        window = self._windows.setdefault(instrument, deque(maxlen=self.lookback))
        if len(window) == self.lookback:
            # What it holds once its orders on their way are done: never the same order twice.
            filled = ctx.position(instrument)
            held = filled + ctx.open_quantity(instrument)
            if held == 0 and price > max(window):
                ctx.logger.info("%s broke out above %s at %s", instrument, max(window), price)
                ctx.buy(instrument, self.quantity)
            elif held > 0 and filled > 0 and price < min(window):
                ctx.sell(instrument, min(held, filled))  # never more than is filled
        window.append(price)
