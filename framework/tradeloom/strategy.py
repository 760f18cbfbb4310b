"""The strategy API: what a plugin author subclasses, and the context it trades through."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradeloom.events import Bar, Fill, MarketTick, OrderType, Rejection, Side, Signal

if TYPE_CHECKING:
    from tradeloom.components import Clock, IdGenerator
    from tradeloom.portfolio import Portfolio

QuantityLike = Decimal | int | str


class Strategy:
    """Base class of strategies. Override the callbacks you need; each gets the event and a
    :class:`StrategyContext`. The same code runs in a backtest, in paper trading and across
    processes: never read the wall clock or global state, use ``ctx``."""

    strategy_id: str = ""

    def on_start(self, ctx: StrategyContext) -> None:
        """Before the first event."""

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        """A market tick for one of the strategy's instruments."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        """A completed bar for one of the strategy's instruments."""

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        """One of the strategy's orders was filled; ``ctx.position`` already includes it."""

    def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
        """One of the strategy's signals was refused by a validator or the executor."""

    def on_stop(self, ctx: StrategyContext) -> None:
        """After the last event, before the pipeline saves its final state."""


class StrategyContext:
    """How a strategy trades and looks at its portfolio."""

    def __init__(
        self,
        strategy_id: str,
        portfolio: Portfolio,
        marks: dict[str, Decimal],
        ids: IdGenerator,
        clock: Clock,
        send: Callable[[Signal], None],
    ) -> None:
        self.strategy_id = strategy_id
        self._portfolio = portfolio
        self._marks = marks
        self._ids = ids
        self._clock = clock
        self._send = send
        self.logger = logging.getLogger(f"tradeloom.strategy.{strategy_id}")

    def buy(
        self, instrument: str, quantity: QuantityLike, limit_price: QuantityLike | None = None
    ) -> Signal:
        """Send a buy signal: a market order, or a limit order when ``limit_price`` is given."""
        return self._signal(Side.BUY, instrument, quantity, limit_price)

    def sell(
        self, instrument: str, quantity: QuantityLike, limit_price: QuantityLike | None = None
    ) -> Signal:
        """Send a sell signal: a market order, or a limit order when ``limit_price`` is given."""
        return self._signal(Side.SELL, instrument, quantity, limit_price)

    def _signal(
        self,
        side: Side,
        instrument: str,
        quantity: QuantityLike,
        limit_price: QuantityLike | None,
    ) -> Signal:
        signal = Signal(
            event_id=self._ids.new_id(),
            ts=self._clock.now(),
            strategy_id=self.strategy_id,
            instrument=instrument,
            side=side,
            quantity=quantity,
            order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
            limit_price=limit_price,
        )
        self._send(signal)
        return signal

    def position(self, instrument: str) -> Decimal:
        """Filled quantity held (negative when short)."""
        return self._portfolio.position(instrument)

    def average_price(self, instrument: str) -> Decimal | None:
        holding = self._portfolio.holdings.get(instrument)
        return holding.average_price if holding is not None and holding.quantity else None

    def last_price(self, instrument: str) -> Decimal | None:
        """The latest price seen for ``instrument``, or None before its first event."""
        return self._marks.get(instrument)

    @property
    def cash(self) -> Decimal:
        return self._portfolio.cash

    @property
    def equity(self) -> Decimal:
        """Cash plus positions valued at their latest prices."""
        return self._portfolio.equity(self._marks)

    def now(self) -> datetime:
        """The pipeline's time: the current event's time in a backtest."""
        return self._clock.now()
