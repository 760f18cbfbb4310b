"""Simple-moving-average crossover, long or flat."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from tradeloom.events import Bar, MarketTick
from tradeloom.strategy import Strategy, StrategyContext


class _Crossing:
    """Two moving sums over one price series, and the sign of fast - slow."""

    __slots__ = (
        "fast",
        "fast_sum",
        "fast_weight",
        "last_sign",
        "prices",
        "slow",
        "slow_sum",
        "slow_weight",
    )

    def __init__(self, fast: int, slow: int) -> None:
        self.fast = fast
        self.slow = slow
        # As Decimals once, rather than an int converted at every product.
        self.fast_weight, self.slow_weight = Decimal(fast), Decimal(slow)
        self.prices: deque[Decimal] = deque(maxlen=slow)
        self.fast_sum = Decimal(0)
        self.slow_sum = Decimal(0)
        self.last_sign = 0

    def update(self, price: Decimal) -> int:
        """Add a price; return +1 when fast crossed above slow, -1 below, 0 otherwise."""
        # Runs for every price: locals instead of repeated attribute lookups.
        prices = self.prices
        fast, slow = self.fast, self.slow
        count = len(prices)
        slow_sum = self.slow_sum - prices[0] if count == slow else self.slow_sum
        fast_sum = self.fast_sum - prices[-fast] if count >= fast else self.fast_sum
        prices.append(price)
        self.fast_sum = fast_sum = fast_sum + price
        self.slow_sum = slow_sum = slow_sum + price
        if count < slow - 1:
            return 0
        # Compare fast_sum/fast with slow_sum/slow without dividing: exact in Decimal.
        scaled_fast, scaled_slow = fast_sum * self.slow_weight, slow_sum * self.fast_weight
        if scaled_fast > scaled_slow:
            sign = 1
        elif scaled_fast < scaled_slow:
            sign = -1
        else:
            return 0
        previous = self.last_sign
        if sign == previous:
            return 0
        self.last_sign = sign
        return sign if previous else 0


class SmaCross(Strategy):
    """Buy ``quantity`` when the fast SMA crosses above the slow one while flat; sell the whole
    position when it crosses below while long. Flat and long count the orders still on their
    way (:meth:`~tradeloom.strategy.StrategyContext.open_quantity`).

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

    def _crossing(self, instrument: str) -> _Crossing:
        crossing = self._crossings[instrument] = _Crossing(self.fast, self.slow)
        return crossing

    def _trade(self, instrument: str, direction: int, ctx: StrategyContext) -> None:
        # What it will hold once the orders on their way are done (across processes an order
        # may still be on its way at the next crossing): never the same order twice.
        position = ctx.position(instrument)
        holding = position + ctx.open_quantity(instrument)
        if direction > 0:
            if holding == 0:
                ctx.buy(instrument, self.quantity)
        elif holding > 0 and position > 0:
            # Never more than is filled: a buy that never comes back (lost with an execution
            # process) must not turn the sale into a short.
            ctx.sell(instrument, min(holding, position))

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        instrument = bar.instrument
        crossing = self._crossings.get(instrument) or self._crossing(instrument)
        direction = crossing.update(bar.close)
        if direction:
            self._trade(instrument, direction, ctx)

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        instrument = tick.instrument
        crossing = self._crossings.get(instrument) or self._crossing(instrument)
        direction = crossing.update(tick.last_price)
        if direction:
            self._trade(instrument, direction, ctx)
