"""The strategy API: what a plugin author subclasses, and the context it trades through."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from tradeloom.events import (
    LARGEST_EXPONENT,
    SMALLEST_EXPONENT,
    Bar,
    Cancel,
    Fill,
    MarketTick,
    OrderType,
    Rejection,
    Side,
    Signal,
)
from tradeloom.open_orders import OpenOrders
from tradeloom.params import describe_validation_error
from tradeloom.runtime.trusted import build_signal

if TYPE_CHECKING:
    from tradeloom.components import Clock, IdGenerator
    from tradeloom.portfolio import Portfolio

QuantityLike = Decimal | int | str

_ZERO = Decimal(0)
_INT_ABOVE_RANGE = 10 ** (LARGEST_EXPONENT + 1)
_MAX_INSTRUMENT: int = next(
    rule.max_length
    for rule in Signal.model_fields["instrument"].metadata
    if getattr(rule, "max_length", None) is not None
)


def _plain_amount(value: Any) -> Decimal | None:
    """``value`` as the Decimal validation would make of it, when that is obvious: a finite,
    positive Decimal or a positive int, in range. None: let validation decide (and explain)."""
    kind = type(value)
    if kind is Decimal:
        if value.is_finite() and value > _ZERO:
            return value if SMALLEST_EXPONENT <= value.adjusted() <= LARGEST_EXPONENT else None
        return None
    if kind is int and 0 < value < _INT_ABOVE_RANGE:
        return Decimal(value)
    return None


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


class MarketTime:
    """The times of the latest market events a strategy stage has handed to its strategies:
    per instrument, and the latest of all."""

    __slots__ = ("by_instrument", "value")

    def __init__(self) -> None:
        self.value: datetime | None = None
        self.by_instrument: dict[str, datetime] = {}

    def of(self, instrument: str) -> datetime | None:
        """The data time of a decision about ``instrument``: its latest event's time. Across
        processes instruments arrive on different partitions, so the latest time of all may
        be ahead of any price of this instrument still to come."""
        return self.by_instrument.get(instrument, self.value)


class StrategyContext:
    """How a strategy trades and looks at its portfolio."""

    def __init__(
        self,
        strategy_id: str,
        portfolio: Portfolio,
        marks: dict[str, Decimal],
        ids: IdGenerator,
        clock: Clock,
        send: Callable[[Signal | Cancel], None],
        market_time: MarketTime | None = None,
    ) -> None:
        self.strategy_id = strategy_id
        self._market_time = market_time or MarketTime()
        self._portfolio = portfolio
        self._marks = marks
        self._ids = ids
        self._clock = clock
        self._send = send
        self.logger = logging.getLogger(f"tradeloom.strategy.{strategy_id}")
        self._open_orders: OpenOrders[str] = OpenOrders()  # by instrument
        # For the runtime: the signal was filled or rejected, so it is open no more (called
        # before the strategy's on_fill or on_rejection; a redelivery changes nothing).
        self._resolve: Callable[[UUID], None] = self._open_orders.close
        # Signals (as ints) with a cancel sent and no outcome yet: for the runtime, so that a
        # refusal of a cancelled signal that was filled meanwhile is not told after its fill.
        self._cancelling: set[int] = set()
        self.warming_up = False
        """True while a resumed backtest hands the strategy the market events its stored
        state already holds, so that its indicators are as they were: :meth:`buy` and
        :meth:`sell` then return the signal without sending it (that time's outcomes are in
        the stored state). The orders in flight when the state was stored are placed again
        when the run goes on, where this strategy made the same one at the state's last time
        as its signal (see ``tradeloom.runtime.in_flight``)."""
        self.unsent_while_warming_up = 0
        # A resumed backtest's warm-up: what is made at the stored state's last time (its
        # orders may never have reached the executor) is held, to be sent when the run goes on.
        self._warm_up_last_time: datetime | None = None
        self._held_while_warming_up: list[Signal] = []

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
        # Values a strategy passes are validated; the common plain case (a positive Decimal
        # or int, a short instrument name) is checked here and built without a second pass.
        amount = _plain_amount(quantity)
        limit = None if limit_price is None else _plain_amount(limit_price)
        plain = (
            amount is not None
            and (limit is not None or limit_price is None)
            and type(instrument) is str
            and 0 < len(instrument) <= _MAX_INSTRUMENT
            and instrument.isprintable()
            and type(self.strategy_id) is str
        )
        build = build_signal if plain else Signal
        try:
            signal = build(
                event_id=self._ids.new_id(),
                ts=self._clock.now(),
                strategy_id=self.strategy_id,
                instrument=instrument,
                side=side,
                quantity=amount if plain else quantity,
                order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
                limit_price=limit if plain else limit_price,
                market_ts=self._market_time.of(instrument),
            )
        except ValidationError as exc:  # what the strategy passed, said in a line
            raise ValueError(
                f"{side.value} {instrument!r}: {describe_validation_error(exc)}"
            ) from None
        if self.warming_up:
            if signal.ts == self._warm_up_last_time:
                # Open from now on, as it would be in a run that never stopped: a strategy
                # that checks open_quantity() does not make it twice at that time.
                self._held_while_warming_up.append(signal)
                self._open_orders.add(instrument, signal)
            else:
                self.unsent_while_warming_up += 1
            return signal
        self._open_orders.add(instrument, signal)
        self._send(signal)
        return signal

    def cancel(self, signal: Signal) -> bool:
        """Ask for ``signal`` (as :meth:`buy` or :meth:`sell` returned it) to be cancelled,
        with the order made from it.

        Returns True when the signal was still open and the request is sent. The answer comes
        as the signal's outcome: an ``on_rejection`` with ``validator == "cancel"`` if the
        order was cancelled in time, else its fill (or its refusal) as usual. Until then the
        signal counts in :meth:`open_quantity`. Returns False, and sends nothing, when its
        fill or rejection has come back already."""
        if not isinstance(signal, Signal):
            raise TypeError(
                f"cancel() takes the Signal that buy() or sell() returned, not "
                f"{type(signal).__name__}"
            )
        if signal.strategy_id != self.strategy_id:
            raise ValueError(
                f"signal {signal.event_id} is strategy {signal.strategy_id!r}'s, not "
                f"{self.strategy_id!r}'s: a strategy cancels only its own signals"
            )
        if not self._open_orders.is_open(signal.event_id):
            return False
        if self.warming_up:  # one held to be sent (see warming_up): it is not sent then
            self._held_while_warming_up.remove(signal)
            self._open_orders.close(signal.event_id)
            return True
        self._cancelling.add(signal.event_id.int)
        self._send(Cancel(event_id=self._ids.new_id(), ts=self._clock.now(), signal=signal))
        return True

    def position(self, instrument: str) -> Decimal:
        """Filled quantity held (negative when short). Orders on their way are not in it:
        see :meth:`open_quantity`."""
        return self._portfolio.position(instrument)

    def open_quantity(self, instrument: str) -> Decimal:
        """The quantity of this strategy's signals for ``instrument`` that are neither filled
        nor rejected yet, signed like a position (buys add, sells subtract).

        In one process a market order usually fills on the next price, before the strategy
        sees it; across processes it may still be on its way when the next events arrive.
        ``position(instrument) + open_quantity(instrument)`` is what the strategy will hold
        once everything it sent is done: decide on that, or the same order is sent again."""
        return self._open_orders.quantity(instrument)

    def open_signals(self, instrument: str | None = None) -> list[Signal]:
        """This strategy's signals that are neither filled nor rejected yet (of
        ``instrument``, or all), in the order sent: the ones to cancel, say. After a resumed
        backtest's warm-up these include the orders carried over from the stored state that
        the warm-up did not make again (see "Resuming a backtest" in the docs)."""
        signals = self._open_orders.signals()
        if instrument is None:
            return signals
        return [signal for signal in signals if signal.instrument == instrument]

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
