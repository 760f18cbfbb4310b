"""A paper trader: fills orders against the prices the pipeline sees, with commission and
slippage, and never with a price from the future."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from tradeloom.components import Executor, PricedMarket
from tradeloom.events import (
    CANCELLED,
    Bar,
    Cancel,
    MarketTick,
    Order,
    OrderType,
    Rejection,
    Side,
    Signal,
)
from tradeloom.params import DecimalParam, decimal_param
from tradeloom.runtime.dedupe import RecentIds
from tradeloom.runtime.trusted import build_fill

BPS = Decimal(10_000)
ZERO = Decimal(0)


class PaperTrader(PricedMarket, Executor):
    """Simulated execution.

    ``fill_at="next"`` (default, for backtests) fills a market order at the next market event
    of its instrument that is later than the order: the next tick's last price or the next
    bar's open. ``fill_at="last"`` fills at once at the latest price, as a live paper trader
    does (an order for an instrument without a price waits for its first one).

    "Later than the order" is judged in data time: the later of the latest market time the
    trader has seen when the order arrives and the order's ``market_ts`` (what the strategy
    had seen when it decided; across processes the trader may lag behind). Not the order's
    own timestamp, which is wall-clock time in a live run. An order minted before this trader
    was made (a UUIDv7 id tells) was read again after a restart, or waited while no execution
    process ran: the prices this trader saw first are not from before it arrived, and only its
    ``market_ts`` counts. A tick must be stamped after it, a
    bar must start at or after it, so no order fills at a price from before it was placed.
    With ``fill_at="last"`` an order fills at once at the latest price the trader knows, when
    that price is not older than the order's ``market_ts``; one for an instrument without a
    price yet, or whose latest price is older than the decision (an execution process behind
    the strategy's), fills at the first event stamped at or after the order's data time, at
    that event's latest price.

    Limit orders fill when the price reaches the limit: a buy at the bar's open if that is at
    or below the limit, else at the limit if the bar's low reaches it (ticks: at the last
    price when at or below the limit); sells mirror this. Slippage (``slippage_bps``) makes
    buys pay more and sells get less, never beyond a limit price. Commission is
    ``commission_bps`` of the filled notional. There is one fill per order: an order
    delivered again, or made again from the same signal, is ignored while its signal is among
    the last ``dedupe_window`` seen (0 remembers none). ``on_cancel`` takes a waiting order
    back (see there).
    """

    def __init__(
        self,
        fill_at: Literal["next", "last"] = "next",
        commission_bps: DecimalParam = Decimal(0),
        slippage_bps: DecimalParam = Decimal(0),
        dedupe_window: int = 100_000,
    ) -> None:
        if fill_at not in ("next", "last"):
            raise ValueError(f"fill_at must be 'next' or 'last', got {fill_at!r}")
        if isinstance(dedupe_window, bool) or not isinstance(dedupe_window, int):
            raise ValueError(f"dedupe_window must be a whole number, got {dedupe_window!r}")
        if dedupe_window < 0:
            raise ValueError(f"dedupe_window must be >= 0, got {dedupe_window}")
        self.fill_at = fill_at
        self.commission_rate = decimal_param(commission_bps, where="commission_bps") / BPS
        slippage = decimal_param(slippage_bps, where="slippage_bps")
        if slippage >= BPS:
            raise ValueError(f"slippage_bps must be below 10000 (100%), got {slippage_bps}")
        self.slippage_rate = slippage / BPS
        self.last_events: dict[str, Bar | MarketTick] = {}
        self.pending: dict[str, list[tuple[Order, datetime | None]]] = {}
        self.data_time: datetime | None = None  # the latest market time seen
        # By signal id: one order per signal, so an order made again from a signal delivered
        # again (a risk process restarted before committing it) does not fill twice either.
        self._seen_signals = RecentIds(dedupe_window)
        self._made_ms = time.time_ns() // 1_000_000

    def on_market_at(
        self, event: Bar | MarketTick, price: Decimal, ts: datetime, instrument: str
    ) -> None:
        """:meth:`on_market` given the event's price, time and instrument, which delivery in
        one process reads once for every stage (see
        :meth:`~tradeloom.components.Executor.priced_market_method`)."""
        # Called for every market event: remember the event (its price is read only when an
        # order fills at the last price) and look at waiting orders only when there are some.
        # The event is taken in before waiting orders fill on it: a fill's callbacks may
        # place an order at once (a strategy's on_fill), which is placed after this event and
        # fills at its latest price with fill_at="last", never at one from before it.
        self.last_events[instrument] = event
        data_time = self.data_time
        if data_time is None or ts > data_time:
            self.data_time = ts
        if self.pending:
            waiting = self.pending.get(instrument)
            if waiting:
                self._work(instrument, waiting, event)

    def last_price(self, instrument: str) -> Decimal | None:
        """The latest price seen for ``instrument`` (a tick's last price, a bar's close)."""
        event = self.last_events.get(instrument)
        return event.price if event is not None else None

    def on_order(self, order: Order) -> None:
        if self._seen_signals.seen(order.signal_id):
            return
        # After the order: later than anything this trader has seen, and than what the
        # strategy had seen when it decided (across processes it may be ahead of us).
        placed = self.data_time
        if placed is not None and _minted_before(order.event_id, self._made_ms):
            placed = None  # a backlog, read in no set order with the prices: see the class
        decided = order.market_ts
        if decided is not None and (placed is None or decided > placed):
            placed = decided
        if self.fill_at == "last":
            # As a live paper trader does: at once, at the latest price this trader knows (in
            # one process that is the price the strategy decided on) unless that price is
            # older than the decision: across processes the strategy may have seen prices
            # this trader has not yet, and the order waits for them.
            event = self.last_events.get(order.instrument)
            if event is not None and (decided is None or event.ts >= decided):
                price = event.price
                fill_price = self._execution_price(order, price, price, price)
                if fill_price is not None:
                    self._fill(order, fill_price)
                    return
            elif decided is not None:
                # No price of this instrument from the decision on yet (across processes this
                # trader may be behind the strategy): the first one stamped at or after the
                # decision fills it, however far other instruments' prices are ahead.
                placed = decided
        self.pending.setdefault(order.instrument, []).append((order, placed))

    def on_cancel(self, cancel: Cancel) -> None:
        """Cancel the waiting order of ``cancel.signal``: a rejection by ``"cancel"`` answers.
        An order filled or rejected already gets no answer (its outcome is the answer). One
        this trader never had (lost with an earlier process: waiting orders live in memory) is
        answered as cancelled, so the strategy does not count it as open for ever."""
        signal = cancel.signal
        waiting = self.pending.get(signal.instrument, [])
        for index, (order, _) in enumerate(waiting):
            if order.signal_id == signal.event_id:
                del waiting[index]
                if not waiting:
                    del self.pending[signal.instrument]
                self._answer_cancel(signal, "cancelled by the strategy")
                return
        if self._seen_signals.seen(signal.event_id):
            return  # filled or rejected already: that outcome is the answer
        # Never had it: also an order for it arriving now would be ignored.
        self._answer_cancel(
            signal, "cancelled by the strategy: the order was not open at the paper trader"
        )

    def hand_over(self, moving: Callable[[str], bool]) -> list[Order]:
        """The waiting orders of the instruments another execution process takes over (see
        :meth:`tradeloom.components.Executor.hand_over`), each with the data time it was
        placed at as its ``market_ts`` (the next process fills it after that time too).
        Their signals are forgotten, so an order of one that comes back here is taken again,
        and so are the instruments' latest prices: this process no longer sees them move."""
        handed: list[Order] = []
        for instrument in [name for name in self.last_events if moving(name)]:
            del self.last_events[instrument]
        for instrument in [name for name in self.pending if moving(name)]:
            for order, placed in self.pending.pop(instrument):
                self._seen_signals.discard(order.signal_id)
                handed.append(_placed_at(order, placed))
        return handed

    def waiting_orders(self) -> list[Order]:
        """The waiting orders, as :meth:`hand_over` would give them, left waiting (see
        :meth:`tradeloom.components.Executor.waiting_orders`)."""
        pending = self.pending.values()
        return [_placed_at(order, placed) for waiting in pending for order, placed in waiting]

    def waiting_order_ids(self) -> set[UUID]:
        """The orders waiting for a price (see
        :meth:`tradeloom.components.Executor.waiting_order_ids`)."""
        return {order.event_id for waiting in self.pending.values() for order, _ in waiting}

    def _answer_cancel(self, signal: Signal, reason: str) -> None:
        ctx = self.ctx
        ctx.emit(
            Rejection(
                event_id=ctx.ids.new_id(),
                ts=ctx.clock.now(),
                signal=signal,
                validator=CANCELLED,
                reason=reason,
            )
        )

    def _work(
        self,
        instrument: str,
        waiting: list[tuple[Order, datetime | None]],
        event: Bar | MarketTick,
    ) -> None:
        is_bar = isinstance(event, Bar)
        if is_bar:
            first, low, high = event.open, event.low, event.high
        else:
            first = low = high = event.last_price
        latest = event.price  # a tick's last price, a bar's close
        at_last = self.fill_at == "last"
        # Over a copy, taking each fill out of the live list before emitting it: a fill's
        # callbacks may cancel another waiting order (on_cancel removes it from the live list)
        # or add one (on_order appends to it).
        filled = False
        for entry in waiting.copy():
            if filled and not any(item is entry for item in waiting):
                continue  # cancelled by the callbacks of an earlier fill
            order, placed = entry
            prices = (first, low, high)
            if placed is not None:
                # The whole event may fill the order only if it began after the order (a
                # bar's start, a tick's time). With fill_at="last", an event stamped at the
                # order's own data time or later still gives its latest price: that is the
                # price the strategy decided on (an executor behind the strategy meets it
                # late).
                after = event.start >= placed if is_bar else event.ts > placed
                if not after:
                    if not (at_last and event.ts >= placed):
                        continue  # no look-ahead
                    prices = (latest, latest, latest)
            price = self._execution_price(order, *prices)
            if price is not None:
                waiting.remove(entry)
                filled = True
                self._fill(order, price, event.ts)
        if not waiting and self.pending.get(instrument) is waiting:
            del self.pending[instrument]

    def _execution_price(
        self, order: Order, first: Decimal, low: Decimal, high: Decimal
    ) -> Decimal | None:
        buying = order.side is Side.BUY
        if order.order_type is OrderType.MARKET:
            return self._slipped(first, buying)
        limit = order.limit_price
        assert limit is not None
        if buying:
            if first <= limit:
                return min(self._slipped(first, buying), limit)
            return limit if low <= limit else None
        if first >= limit:
            return max(self._slipped(first, buying), limit)
        return limit if high >= limit else None

    def _slipped(self, price: Decimal, buying: bool) -> Decimal:
        if not self.slippage_rate:
            return price
        return price * (1 + self.slippage_rate) if buying else price * (1 - self.slippage_rate)

    def _fill(self, order: Order, price: Decimal, ts: datetime | None = None) -> None:
        ctx = self.ctx
        # A fill copies a validated order at a validated market price (slippage is below 100%,
        # so the price stays positive): built without a second validation.
        fill = build_fill(
            event_id=ctx.ids.new_id(),
            ts=ts or ctx.clock.now(),
            order_id=order.event_id,
            signal_id=order.signal_id,
            strategy_id=order.strategy_id,
            instrument=order.instrument,
            side=order.side,
            quantity=order.quantity,
            price=price,
            commission=order.quantity * price * self.commission_rate,
        )
        ctx.emit(fill)

    def drain(self) -> None:
        for instrument in list(self.pending):
            orders = [order for order, _ in self.pending.pop(instrument)]
            self._reject(orders, "input ended before the order could fill")

    def _reject(self, orders: Iterable[Order], reason: str) -> None:
        ctx = self.ctx
        for order in orders:
            signal = order.to_signal()
            what = "limit order not filled" if order.order_type is OrderType.LIMIT else reason
            ctx.logger.warning(
                "order %s for %s rejected: %s", order.event_id, order.instrument, reason
            )
            ctx.emit(
                Rejection(
                    event_id=ctx.ids.new_id(),
                    ts=ctx.clock.now(),
                    signal=signal,
                    validator="paper",
                    reason=f"{what}: {reason}" if what != reason else reason,
                )
            )


def _placed_at(order: Order, placed: datetime | None) -> Order:
    """``order`` with the data time it was placed at as its ``market_ts``, when that is later:
    placed elsewhere, it is not filled at an earlier price either."""
    if placed is not None and (order.market_ts is None or placed > order.market_ts):
        return order.model_copy(update={"market_ts": placed})
    return order


def _minted_before(event_id: UUID, wall_ms: int) -> bool:
    """Whether ``event_id`` is a UUIDv7 minted before ``wall_ms`` (Unix milliseconds)."""
    return event_id.int >> 80 < wall_ms and event_id.version == 7
