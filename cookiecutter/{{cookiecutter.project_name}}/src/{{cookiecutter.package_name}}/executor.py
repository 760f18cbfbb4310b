"""An example executor: fills at the next price, paying half a spread. Replace the matching
with calls to your broker."""

from __future__ import annotations

from decimal import Decimal

from tradeloom import Bar, Cancel, Fill, MarketTick, Order, OrderType, Rejection, Side
from tradeloom.components import Executor
from tradeloom.events import CANCELLED

BPS = Decimal(10_000)


class {{ cookiecutter.class_name }}(Executor):
    """Simulated execution with a bid/ask spread.

    An order waits for the next price of its instrument that is later than the order (never a
    price it could not have known), then fills at that price plus half of ``spread_bps`` for a
    buy, minus half for a sell. A limit order fills only when that price is at or better than
    its limit. Commission is ``commission_per_unit`` times the quantity. Orders still waiting
    when the input ends are rejected, so every order gets exactly one fill or rejection; a
    cancelled one is rejected by ``"cancel"``.
    """

    def __init__(
        self, spread_bps: Decimal = Decimal(0), commission_per_unit: Decimal = Decimal(0)
    ) -> None:
        if spread_bps < 0 or commission_per_unit < 0:
            raise ValueError("spread_bps and commission_per_unit must not be negative")
        self.half_spread = Decimal(spread_bps) / BPS / 2
        self.commission_per_unit = Decimal(commission_per_unit)
        self.waiting: dict[str, list[Order]] = {}
        self.seen: set[object] = set()

    def on_market(self, event: Bar | MarketTick) -> None:
        # For a bar, the first price after the order is the bar's open.
        price = event.open if isinstance(event, Bar) else event.last_price
        waiting = self.waiting.get(event.instrument, [])
        # Over a copy: a fill's callbacks (the strategy's on_fill, in one process) may cancel
        # a waiting order or add one, which changes the list itself.
        for order in waiting.copy():
            if order not in waiting or event.ts <= order.ts:
                continue  # cancelled meanwhile, or not a later price (no look-ahead)
            fill_price = self._price(order, price)
            if fill_price is not None:
                waiting.remove(order)
                self._fill(order, fill_price)

    def on_order(self, order: Order) -> None:
        if order.event_id in self.seen:  # a redelivered order must not fill twice
            return
        self.seen.add(order.event_id)
        self.waiting.setdefault(order.instrument, []).append(order)

    def on_cancel(self, cancel: Cancel) -> None:
        orders = self.waiting.get(cancel.signal.instrument, [])
        for order in orders:
            if order.signal_id == cancel.signal.event_id:
                orders.remove(order)
                self._reject(order, "cancelled by the strategy", validator=CANCELLED)
                return
        # Not waiting: filled or rejected already, and that outcome is the answer.

    def drain(self) -> None:
        for orders in self.waiting.values():
            for order in orders:
                self._reject(order, "input ended before the order could fill")
        self.waiting.clear()

    def _price(self, order: Order, market: Decimal) -> Decimal | None:
        buying = order.side is Side.BUY
        price = market * (1 + self.half_spread) if buying else market * (1 - self.half_spread)
        if order.order_type is OrderType.LIMIT:
            limit = order.limit_price
            assert limit is not None
            if (price > limit) if buying else (price < limit):
                return None
        return price

    def _fill(self, order: Order, price: Decimal) -> None:
        self.ctx.emit(
            Fill(
                event_id=self.ctx.ids.new_id(),
                ts=self.ctx.clock.now(),
                order_id=order.event_id,
                signal_id=order.signal_id,
                strategy_id=order.strategy_id,
                instrument=order.instrument,
                side=order.side,
                quantity=order.quantity,
                price=price,
                commission=self.commission_per_unit * order.quantity,
            )
        )

    def _reject(
        self, order: Order, reason: str, validator: str = "{{ cookiecutter.component_name }}"
    ) -> None:
        self.ctx.emit(
            Rejection(
                event_id=self.ctx.ids.new_id(),
                ts=self.ctx.clock.now(),
                signal=order.to_signal(),  # the signal the order was made from
                validator=validator,
                reason=reason,
            )
        )
