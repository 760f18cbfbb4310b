"""Simple-moving-average crossover, long or flat."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from tradeloom.events import Bar, MarketTick
from tradeloom.strategy import Strategy, StrategyContext


class _Crossing:
    """Two moving sums over one price series, and the sign of fast - slow."""

    __slots__ = ("fast", "fast_sum", "last_sign", "prices", "slow", "slow_sum")

    def __init__(self, fast: int, slow: int) -> None:
        self.fast = fast
        self.slow = slow
        self.prices: deque[Decimal] = deque(maxlen=slow)
        self.fast_sum = Decimal(0)
        self.slow_sum = Decimal(0)
        self.last_sign = 0

    def update(self, price: Decimal) -> int:
        """Add a price; return +1 when fast crossed above slow, -1 below, 0 otherwise."""
        prices = self.prices
        if len(prices) == self.slow:
            self.slow_sum -= prices[0]
        if len(prices) >= self.fast:
            self.fast_sum -= prices[-self.fast]
        prices.append(price)
        self.fast_sum += price
        self.slow_sum += price
        if len(prices) < self.slow:
            return 0
        # Compare fast_sum/fast with slow_sum/slow without dividing: exact in Decimal.
        difference = self.fast_sum * self.slow - self.slow_sum * self.fast
        sign = (difference > 0) - (difference < 0)
        if sign == 0:
            return 0
        previous, self.last_sign = self.last_sign, sign
        if previous and sign != previous:
            return sign
        return 0


class SmaCross(Strategy):
    """Buy ``quantity`` when the fast SMA crosses above the slow one while flat; sell the whole
    position when it crosses below while long.

    A crossing is a change of the sign of (fast - slow) from the last non-zero difference.
    Works on bars (close) and ticks (last price), per instrument.
    """

    def __init__(self, fast: int = 10, slow: int = 30, quantity: Decimal = Decimal(10)) -> None:
        if fast < 1 or slow < 1:
            raise ValueError(f"fast and slow must be at least 1, got {fast} and {slow}")
        if fast >= slow:
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, got {quantity}")
        self.fast = fast
        self.slow = slow
        self.quantity = quantity
        self._crossings: dict[str, _Crossing] = {}

    def _on_price(self, instrument: str, price: Decimal, ctx: StrategyContext) -> None:
        crossing = self._crossings.get(instrument)
        if crossing is None:
            crossing = self._crossings[instrument] = _Crossing(self.fast, self.slow)
        direction = crossing.update(price)
        if direction > 0:
            if ctx.position(instrument) == 0:
                ctx.buy(instrument, self.quantity)
        elif direction < 0:
            position = ctx.position(instrument)
            if position > 0:
                ctx.sell(instrument, position)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self._on_price(bar.instrument, bar.close, ctx)

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self._on_price(tick.instrument, tick.last_price, ctx)
