"""The pipeline stages. Each consumes some topics and publishes to others through the
transport, so the same code runs in one process or spread over many."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Context, Decimal, getcontext
from typing import Any
from uuid import UUID

import attrs

from tradeloom.components import (
    Clock,
    ExecutionContext,
    Executor,
    IdGenerator,
    PricedMarket,
    PricedMarketMethod,
    Validator,
    report_cannot_cancel,
)
from tradeloom.errors import StageError, StrategyError, TradeloomError
from tradeloom.events import (
    CANCELLED,
    Bar,
    Cancel,
    Event,
    Fill,
    MarketTick,
    Order,
    OrderType,
    Rejection,
    Signal,
)
from tradeloom.open_orders import OpenOrders
from tradeloom.portfolio import PortfolioBook
from tradeloom.runtime.dedupe import RecentIds
from tradeloom.runtime.pending import PriceWait
from tradeloom.runtime.status import PipelineStatus
from tradeloom.runtime.transport import Topics, Transport
from tradeloom.runtime.trusted import build_order
from tradeloom.settings import PendingSettings
from tradeloom.strategy import MarketTime, Strategy, StrategyContext

ZERO = Decimal(0)
MAX_OUTCOMES_IN_A_ROW = 10_000
"""Outcomes one strategy callback may set off in one process (each answered with a new
signal that comes back at once) before the run stops: a retry loop, not trading."""
OUTCOMES_REMEMBERED = 100_000
"""Signal ids a stage remembers of each kind of outcome (filled, refused); the oldest go."""


def decimal_settings(context: Context) -> tuple[int, str, int, int, int]:
    """What of a Decimal context silently changes amounts: precision, rounding, exponent
    limits and clamping. (A trap set raises where it bites, with its own name.)"""
    return (context.prec, context.rounding, context.Emin, context.Emax, context.clamp)


def _described(settings: tuple[int, str, int, int, int]) -> str:
    prec, rounding, emin, emax, clamp = settings
    return f"prec={prec} rounding={rounding} Emin={emin} Emax={emax} clamp={clamp}"


@attrs.define
class StageServices:
    """What every stage of one process shares."""

    transport: Transport
    ids: IdGenerator
    clock: Clock
    status: PipelineStatus
    logger: logging.Logger
    event_observer: Callable[[str, str, Event], None] | None = None
    """Dispatches ``tradeloom_event_observed``; None when no plugin implements it."""


@attrs.define
class DirectRoute:
    """Where events of one topic go in this process: the subscribed stages and their methods,
    in the transport's order. Valid while the transport's live list of subscribers still has
    the length it had when the route was made (subscribing only appends): a handler added
    later, such as a plugin's, makes the events go through the transport again."""

    subscribers: Sequence[Callable[..., None]]
    count: int
    targets: list[tuple[Stage, Callable[[Any], None]]]


class Stage:
    role: str = ""
    topics: tuple[str, ...] = ()
    #: Topics whose events, handled again after a restart, make this stage's output again
    #: (see :meth:`~tradeloom.runtime.transport.Transport.add_decided_again`).
    decided_again: tuple[str, ...] = ()

    def __init__(self, services: StageServices) -> None:
        self.services = services
        self.transport = services.transport
        self._status = services.status
        self.counters = services.status.stage(self.role)
        self._observer = services.event_observer
        #: Per topic, the stages (and their methods) the in-process transport would call, in
        #: order, when the pipeline may call them itself; set by the pipeline before the run.
        self.direct_routes: dict[str, DirectRoute] = {}

    def handler(self) -> Callable[[str, Event], None]:
        """The function the transport calls for each event of ``topics``."""
        routes: dict[str, Callable[[Any], None]] = self.routes()
        counters = self.counters
        status = self.services.status
        role = self.role
        perf_counter = time.perf_counter

        def handle(topic: str, event: Event) -> None:
            counters.events_in += 1
            try:
                observe = status.stage_observer
                if observe is None:  # no metrics plugin: no timing on the hot path
                    routes[topic](event)
                    return
                started = perf_counter()
                try:
                    routes[topic](event)
                finally:
                    observe(role, topic, event, perf_counter() - started)
            except TradeloomError:
                raise
            except Exception as exc:
                raise self.failed(event, exc) from exc

        observer = self._observer
        if observer is None:
            return handle

        def handle_observed(topic: str, event: Event) -> None:
            observer(role, "in", event)
            handle(topic, event)

        return handle_observed

    def failed(self, event: Event, exc: Exception) -> StageError:
        """Count a failure and name it: this stage, the event, the error. Named here, so that
        an executor's error delivered depth-first through a strategy's ctx.buy is not taken
        for the strategy's own."""
        self.counters.errors += 1
        return StageError(
            f"{self.role} stage failed on {getattr(event, 'type', type(event).__name__)} "
            f"{event.event_id}: {type(exc).__name__}: {exc}"
        )

    def routes(self) -> dict[str, Callable[[Any], None]]:
        """The method handling each topic of ``topics``."""
        raise NotImplementedError

    def priced_market_method(self) -> PricedMarketMethod | None:
        """The market method taking the event's price, time and instrument as well,
        ``method(event, event.price, event.ts, event.instrument)``, doing what the market
        route does; None when the stage has none. Delivery in one process reads them once for
        every stage that has one (``price`` is a property, which costs a Python call per read,
        and each field read of a pydantic model goes through its ``__getattr__`` hook)."""
        return None

    def publish(self, topic: str, event: Event, key: str | None, direct: bool = True) -> None:
        self.counters.events_out += 1
        if self._observer is not None:
            self._observer(self.role, "out", event)
        route = self.direct_routes.get(topic) if direct else None
        if (
            route is None
            or len(route.subscribers) != route.count  # no longer valid (see DirectRoute)
            or self._status.stage_observer is not None
        ):
            self.transport.publish(topic, event, key)
            return
        # What the transport would do, without its handler layer (see Pipeline.direct_route).
        for stage, method in route.targets:
            stage.counters.events_in += 1
            try:
                method(event)
            except TradeloomError:
                raise
            except Exception as exc:
                raise stage.failed(event, exc) from exc

    def direct_method(self, topic: str) -> Callable[[Any], None]:
        """The method the pipeline may call itself for the events ``publish`` sends on
        ``topic`` in this process (see ``Pipeline.direct_route``): the route's handler."""
        return self.routes()[topic]

    def start(self) -> None:
        """Before input flows."""

    def on_time(self, now: datetime) -> None:
        """Time passed (live runs): expire what waits too long."""

    def drain(self) -> None:
        """Input has ended: settle everything still pending."""


class StrategyStage(PricedMarket, Stage):
    """Runs strategies on market data; keeps each strategy's own view of its portfolio."""

    role = "strategy"
    topics = (Topics.MARKET, Topics.FILLS, Topics.REJECTIONS)
    # Restarted, a strategy decides on a market event again from its book in the journal.
    # Its answers to a fill or a rejection are not made again: that input was committed
    # before (the book already holds the fill).
    decided_again = (Topics.MARKET,)

    def __init__(
        self,
        services: StageServices,
        strategies: Mapping[str, tuple[Strategy, Sequence[str] | None]],
        book: PortfolioBook,
    ) -> None:
        super().__init__(services)
        self.book = book
        self.strategies: dict[str, Strategy] = {}
        self.contexts: dict[str, StrategyContext] = {}
        self._instrument_filter: dict[str, frozenset[str] | None] = {}
        # Per instrument, the strategies to call and their contexts (ticks and bars apart).
        self._tick_targets: dict[str, list[tuple[Callable[..., None], StrategyContext]]] = {}
        self._bar_targets: dict[str, list[tuple[Callable[..., None], StrategyContext]]] = {}
        self.market_time = MarketTime()
        for strategy_id, (strategy, instruments) in strategies.items():
            strategy.strategy_id = strategy_id
            self.strategies[strategy_id] = strategy
            self.contexts[strategy_id] = StrategyContext(
                strategy_id,
                book.portfolio(strategy_id),
                book.marks,
                services.ids,
                services.clock,
                self._send,
                self.market_time,
            )
            self._instrument_filter[strategy_id] = frozenset(instruments) if instruments else None
        # In one process a signal's fill or rejection may come back while the strategy is
        # still in ctx.buy() (fill_at = "last", a validator's refusal). Its book and open
        # quantity change at once, but on_fill / on_rejection wait until the strategy's
        # callback has returned: a strategy is never re-entered, and sees the outcome of a
        # signal only after it has the signal in hand.
        self._sending = 0
        self._deferred: deque[tuple[str, Callable[..., None], Event]] = deque()
        self._rejected = RecentIds(OUTCOMES_REMEMBERED)  # outcomes told: see on_rejection
        self._flushing = False
        # The books compute in the thread's Decimal context, which strategy code shares.
        # Swapping contexts around every call costs more than the rest of a tick's strategy
        # dispatch, so a change is found after the rare callbacks (naming the strategy) and
        # after each block of market events (check_decimal_context).
        self._decimal_settings = decimal_settings(getcontext())

    def routes(self) -> dict[str, Callable[[Any], None]]:
        return {
            Topics.MARKET: self.on_market,
            Topics.FILLS: self.on_fill,
            Topics.REJECTIONS: self.on_rejection,
        }

    def _send(self, signal: Signal | Cancel) -> None:
        self._sending += 1
        try:
            self.publish(Topics.SIGNALS, signal, signal.instrument)
        finally:
            self._sending -= 1

    def _targets_for(
        self, instrument: str, kind: type
    ) -> list[tuple[Callable[..., None], StrategyContext]]:
        targets = []
        for strategy_id, strategy in self.strategies.items():
            wanted = self._instrument_filter[strategy_id]
            if wanted is not None and instrument not in wanted:
                continue
            method_name = "on_bar" if kind is Bar else "on_tick"
            if getattr(type(strategy), method_name) is getattr(Strategy, method_name):
                continue  # not overridden: skip the call entirely
            targets.append((getattr(strategy, method_name), self.contexts[strategy_id]))
        (self._tick_targets if kind is MarketTick else self._bar_targets)[instrument] = targets
        return targets

    def on_market_at(
        self, event: Bar | MarketTick, price: Decimal, ts: datetime, instrument: str
    ) -> None:
        self.book.marks[instrument] = price
        market_time = self.market_time
        market_time.by_instrument[instrument] = ts
        if market_time.value is None or ts > market_time.value:
            market_time.value = ts
        kind = type(event)
        targets = (self._tick_targets if kind is MarketTick else self._bar_targets).get(instrument)
        if targets is None:
            targets = self._targets_for(instrument, kind)
        for callback, ctx in targets:
            try:
                callback(event, ctx)
            except TradeloomError:
                raise
            except (Exception, SystemExit) as exc:  # sys.exit() in a strategy is its error too
                self.counters.errors += 1
                raise StrategyError(
                    f"strategy {ctx.strategy_id!r} raised on {event.type} {event.event_id} "
                    f"({instrument} at {event.ts.isoformat()}): {type(exc).__name__}: {exc}"
                ) from exc
            if self._deferred:  # outcomes of what this strategy just sent
                self._call_deferred()

    def on_fill(self, fill: Fill) -> None:
        strategy = self.strategies.get(fill.strategy_id)
        if strategy is None:
            return
        ctx = self.contexts[fill.strategy_id]
        if not self.book.apply_fill(fill) and not ctx._open_orders.is_open(fill.signal_id):
            # In the book already and its signal answered: a fill delivered again. (One the
            # book took from the journal first, catching up after a rebalance, is still the
            # outcome of a signal this process sent: told below.)
            return
        ctx._resolve(fill.signal_id)
        if ctx._cancelling and fill.signal_id.int in ctx._cancelling:
            # Filled before its cancel took effect: the fill is the outcome, and a refusal
            # that answers the cancel (an executor that no longer knew the order) is not told.
            ctx._cancelling.discard(fill.signal_id.int)
            self._rejected.add(fill.signal_id)
        if type(strategy).on_fill is not Strategy.on_fill:  # not overridden: nothing to call
            if self._sending or self._flushing:
                self._deferred.append((fill.strategy_id, strategy.on_fill, fill))  # __init__
            else:
                self._call(fill.strategy_id, strategy.on_fill, fill)

    def catch_up(self, fills: Iterable[Fill]) -> int:
        """Take the journaled ``fills`` the book lacks (another process applied them). One of
        a signal this process still has open is its outcome, as if it came on the topic: the
        signal is answered and the strategy told. Returns how many the book took."""
        book = self.book
        before = len(book.applied_orders)
        for fill in fills:
            if fill.strategy_id in self.strategies:
                self.on_fill(fill)
            else:
                book.apply_fill(fill)
        return len(book.applied_orders) - before

    def on_rejection(self, rejection: Rejection) -> None:
        signal = rejection.signal
        strategy = self.strategies.get(signal.strategy_id)
        if strategy is not None:
            ctx = self.contexts[signal.strategy_id]
            ctx._resolve(signal.event_id)
            ctx._cancelling.discard(signal.event_id.int)
            if self._rejected.seen(signal.event_id):
                # A second refusal of one signal, or one after its fill (an executor that
                # restarted answers a cancel of an order it had already rejected or filled
                # when it stopped): the first outcome is the one told.
                return
            if self._sending or self._flushing:
                self._deferred.append((signal.strategy_id, strategy.on_rejection, rejection))
            else:
                self._call(signal.strategy_id, strategy.on_rejection, rejection)

    def _call_deferred(self) -> None:
        # First in, first out, also for outcomes of signals sent from these callbacks.
        if self._flushing:
            return
        self._flushing = True
        deferred = self._deferred
        delivered = 0
        try:
            while deferred:
                strategy_id, callback, event = deferred.popleft()
                delivered += 1
                if delivered > MAX_OUTCOMES_IN_A_ROW:
                    deferred.clear()
                    raise StrategyError(
                        f"strategy {strategy_id!r}: {MAX_OUTCOMES_IN_A_ROW} fills and "
                        "rejections came back at once in a row, each answered with a new "
                        "signal, with no market event in between: does its on_rejection or "
                        "on_fill send the same signal again and again?"
                    )
                self._call_now(strategy_id, callback, event)
        finally:
            self._flushing = False

    def _call(self, strategy_id: str, callback: Callable[..., None], event: Event | None) -> None:
        self._call_now(strategy_id, callback, event)
        if self._deferred:
            self._call_deferred()

    def _call_now(
        self, strategy_id: str, callback: Callable[..., None], event: Event | None
    ) -> None:
        ctx = self.contexts[strategy_id]
        # Changed before this callback (in an on_tick or on_bar since the last check): said
        # without naming this one.
        self.check_decimal_context()
        try:
            if event is None:
                callback(ctx)
            else:
                callback(event, ctx)
        except TradeloomError:
            raise
        except (Exception, SystemExit) as exc:
            self.counters.errors += 1
            what = callback.__name__
            if event is not None:
                what += f" ({type(event).__name__})"
            raise StrategyError(
                f"strategy {ctx.strategy_id!r} raised in {what}: {type(exc).__name__}: {exc}"
            ) from exc
        if decimal_settings(getcontext()) != self._decimal_settings:
            self._decimal_context_changed(f"strategy {strategy_id!r} in {callback.__name__}")

    def send_held(self, signals: Iterable[Signal]) -> None:
        """Send signals strategies made while warming up and hold open (see
        ``StrategyContext.warming_up``) as if they sent them now; their outcomes come to
        them as usual."""
        for signal in signals:
            self._send(signal)
        if self._deferred:
            self._call_deferred()

    def on_time(self, now: datetime) -> None:
        self.check_decimal_context()  # live runs, whose strategies a transport may call

    def check_decimal_context(self) -> None:
        """Raise :class:`StrategyError` when strategy code changed the thread's Decimal
        context since the last check (called between blocks of market events)."""
        if decimal_settings(getcontext()) != self._decimal_settings:
            who = ", ".join(repr(s) for s in self.strategies)
            self._decimal_context_changed(f"one of the strategies {who} in on_tick or on_bar")

    def _decimal_context_changed(self, who: str) -> None:
        context = getcontext()
        changed = decimal_settings(context)
        # Put back in place (the object is shared with the code that started the run, which
        # a new one set here would not reach), so the rest of the run computes right.
        context.prec, context.rounding, context.Emin, context.Emax, context.clamp = (
            self._decimal_settings
        )
        raise StrategyError(
            f"{who} changed the thread's Decimal context "
            f"({_described(changed)}, was "
            f"{_described(self._decimal_settings)}); cash, prices and commissions are "
            "computed in it. "
            "Change it only for your own sums, inside `with decimal.localcontext() as c:`. "
            "Amounts computed since the change may be rounded: start the backtest again "
            "rather than resume it"
        )

    def start(self) -> None:
        for strategy_id, strategy in self.strategies.items():
            self._call(strategy_id, strategy.on_start, None)

    def unseen_instruments(self, also_seen: Iterable[str] = ()) -> dict[str, list[str]]:
        """Per strategy, the instruments it asked for (``instruments``) that no market event
        has carried so far (nor are in ``also_seen``: skipped by a resumed backtest, say)."""
        seen = self.market_time.by_instrument.keys() | set(also_seen)
        unseen = {
            strategy_id: sorted(wanted - seen)
            for strategy_id, wanted in self._instrument_filter.items()
            if wanted is not None
        }
        return {strategy_id: names for strategy_id, names in unseen.items() if names}

    def drain(self) -> None:
        failure: StrategyError | None = None
        for strategy_id, strategy in self.strategies.items():
            try:
                self._call(strategy_id, strategy.on_stop, None)
            except StrategyError as exc:
                failure = failure or exc  # every strategy still gets its on_stop
        if failure is not None:
            raise failure


_LIMIT = OrderType.LIMIT


class _RiskView:
    """Positions including orders in flight, cash and last prices, as validators see them."""

    def __init__(self, book: PortfolioBook) -> None:
        self.book = book
        self.open_orders: OpenOrders[tuple[str, str]] = OpenOrders()
        self._open_quantity = self.open_orders.quantity
        # Limit orders sent and not filled, also in open_orders: they may never fill (see
        # position_range). The risk stage adds and closes both (inline: once per order).
        self.open_limits: OpenOrders[tuple[str, str]] = OpenOrders()
        self._open_limit_quantities = self.open_limits.quantities

    def last_price(self, instrument: str) -> Decimal | None:
        return self.book.marks.get(instrument)

    def position(self, strategy_id: str, instrument: str) -> Decimal:
        # Validators ask for it on every order: the book's portfolio without a call when it
        # exists (portfolio() makes a missing one).
        portfolio = self.book.portfolios.get(strategy_id)
        if portfolio is None:
            portfolio = self.book.portfolio(strategy_id)
        holding = portfolio.holdings.get(instrument)
        filled = holding.quantity if holding is not None else ZERO
        return filled + self._open_quantity((strategy_id, instrument))

    def position_range(self, strategy_id: str, instrument: str) -> tuple[Decimal, Decimal]:
        # position(), inline: validators ask on every order.
        portfolio = self.book.portfolios.get(strategy_id)
        if portfolio is None:
            portfolio = self.book.portfolio(strategy_id)
        holding = portfolio.holdings.get(instrument)
        key = (strategy_id, instrument)
        expected = (holding.quantity if holding is not None else ZERO) + self._open_quantity(key)
        limits = self._open_limit_quantities(key)
        if not limits:
            return expected, expected
        # Without the limit buys (signed +) for the lowest, the limit sells (signed -) for
        # the highest.
        buys = sum([quantity for quantity in limits if quantity > 0], ZERO)
        sells = sum([quantity for quantity in limits if quantity < 0], ZERO)
        return expected - buys, expected - sells

    def cash(self, strategy_id: str) -> Decimal:
        return self.book.portfolio(strategy_id).cash


class KnownOutcomes:
    """Signals whose outcome is known, a fill or a journaled rejection: across processes, one
    read again after a crash (records behind one that waited are read again) is not decided
    or executed a second time. Fills and rejections are kept apart, each up to ``capacity``:
    a long journal of rejections must not push the fills out."""

    def __init__(self, capacity: int) -> None:
        self.filled = RecentIds(capacity)
        self.rejected = RecentIds(capacity)

    def __bool__(self) -> bool:
        return bool(self.filled) or bool(self.rejected)

    def __contains__(self, signal_id: UUID) -> bool:
        return signal_id in self.filled or (bool(self.rejected) and signal_id in self.rejected)

    def remember_filled(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            self.filled.add(fill.signal_id)

    def remember_rejected(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            self.rejected.add(rejection.signal.event_id)


class RiskStage(PricedMarket, Stage):
    """Runs every validator on each signal; passes orders on or publishes rejections.

    Signals for an instrument with no price yet wait for its first price (bounded by
    ``[pending]``); validators that need no price (``needs_price = False``) judge them before
    the wait, the others after it.
    """

    role = "risk"
    topics = (Topics.MARKET, Topics.SIGNALS, Topics.FILLS, Topics.REJECTIONS)

    def __init__(
        self,
        services: StageServices,
        validators: Sequence[tuple[str, Validator]],
        book: PortfolioBook,
        pending: PendingSettings,
    ) -> None:
        super().__init__(services)
        self.validators = list(validators)
        self.book = book
        self.view = _RiskView(book)
        self._answered = RecentIds(OUTCOMES_REMEMBERED)  # signals refused here: see _cancel
        self._outcomes = KnownOutcomes(OUTCOMES_REMEMBERED)
        self._priceless_validators = [(n, v) for n, v in self.validators if not v.needs_price]
        self.waiting = PriceWait(
            max_signals=pending.max_signals,
            max_wait_seconds=pending.max_wait_seconds,
            reject=lambda signal, reason: self.reject(signal, "pending", reason),
        )

    def routes(self) -> dict[str, Callable[[Any], None]]:
        return {
            Topics.MARKET: self.on_market,
            Topics.SIGNALS: self.on_signal,
            Topics.FILLS: self.on_fill,
            Topics.REJECTIONS: self.on_rejection,
        }

    def on_market_at(
        self, event: Bar | MarketTick, price: Decimal, ts: datetime, instrument: str
    ) -> None:
        self.book.marks[instrument] = price
        waiting = self.waiting
        if waiting.by_instrument:
            waiting.expire(self.services.clock.now())
            # One at a time from the live queue: a verdict's callbacks may cancel or send.
            while (signal := waiting.next_released(instrument)) is not None:
                self.judge(signal)

    def on_signal(self, signal: Signal | Cancel) -> None:
        # type() first: a negative isinstance() of a pydantic model class costs five times more.
        if type(signal) is not Signal and isinstance(signal, Cancel):
            self._cancel(signal)
            return
        if signal.event_id in self._outcomes:  # read again: it has its outcome already
            self.services.status.duplicates_ignored += 1
            return
        instrument = signal.instrument
        if instrument not in self.book.marks:
            # Nothing trades without a price: wait for the first one (bounded). Validators
            # that need no price may refuse the signal now rather than after the wait.
            if self._refused(signal, self._priceless_validators):
                return
            # The wait counts from the signal's time: one read again (a risk process that
            # restarted, or took the signal over at a rebalance) has waited since then.
            now = self.services.clock.now()
            self.waiting.hold(signal, signal.ts if signal.ts < now else now)
            return
        if instrument in self.waiting.by_instrument:
            # Sent while the first price releases the signals that waited for it (from the
            # callbacks of their verdicts): judged right after them, in the order sent.
            self.waiting.put_behind(signal, self.services.clock.now())
            return
        self.judge(signal)

    def _refused(self, signal: Signal, validators: Sequence[tuple[str, Validator]]) -> bool:
        view = self.view
        for name, validator in validators:
            try:
                reason = validator.validate(signal, view)
            except (Exception, SystemExit) as exc:
                raise StageError(
                    f"validator {name!r} raised on signal {signal.event_id} "
                    f"({signal.instrument}): {type(exc).__name__}: {exc}"
                ) from exc
            if reason is not None:
                if not isinstance(reason, str) or not reason.strip():
                    raise StageError(
                        f"validator {name!r} returned {reason!r} for signal {signal.event_id} "
                        f"({signal.instrument}): validate() returns None to let a signal "
                        "trade, or the reason it may not (a non-empty string)"
                    )
                self.reject(signal, name, reason)
                return True
        return False

    def judge(self, signal: Signal) -> None:
        view = self.view
        if self._refused(signal, self.validators):
            return
        key = (signal.strategy_id, signal.instrument)
        view.open_orders.add(key, signal)
        if signal.order_type is _LIMIT:
            view.open_limits.add(key, signal)
        order = build_order(  # copies a validated signal: not validated again
            event_id=self.services.ids.new_id(),
            ts=self.services.clock.now(),
            signal_id=signal.event_id,
            strategy_id=signal.strategy_id,
            instrument=signal.instrument,
            side=signal.side,
            quantity=signal.quantity,
            order_type=signal.order_type,
            limit_price=signal.limit_price,
            market_ts=signal.market_ts,
        )
        self.publish(Topics.ORDERS, order, order.instrument)

    def _cancel(self, cancel: Cancel) -> None:
        signal = cancel.signal
        if self.waiting.withdraw(signal):
            self.reject(signal, CANCELLED, "cancelled by the strategy before a first price came")
        elif signal.event_id not in self._answered:
            # On to the executor, behind the order made from the signal (the same key): it
            # cancels the order if still open. One refused here never reached it, and its
            # rejection is the answer already. Through the transport, whose handler tells a
            # Cancel from an order: a direct route calls the executor's on_order.
            self.publish(Topics.ORDERS, cancel, signal.instrument, direct=False)

    def reject(self, signal: Signal, validator: str, reason: str) -> None:
        self._answered.add(signal.event_id)
        self.services.status.rejections[validator] += 1
        rejection = Rejection(
            event_id=self.services.ids.new_id(),
            ts=self.services.clock.now(),
            signal=signal,
            validator=validator,
            reason=reason,
        )
        self.publish(Topics.REJECTIONS, rejection, signal.instrument)

    def on_fill(self, fill: Fill) -> None:
        view = self.view
        view.open_orders.close(fill.signal_id)
        view.open_limits.close(fill.signal_id)
        self._outcomes.filled.add(fill.signal_id)
        self.book.apply_fill(fill)

    def remember_filled(self, fills: Iterable[Fill]) -> None:
        """The signals of ``fills`` (the journal the book was restored from) have their
        outcome: read again, they are not decided again."""
        self._outcomes.remember_filled(fills)

    def remember_rejected(self, rejections: Iterable[Rejection]) -> None:
        """The signals of ``rejections`` (the persistence's journal of them) have their
        outcome: read again, they are not decided again, and a cancel of one is not sent on."""
        rejections = list(rejections)
        self._outcomes.remember_rejected(rejections)
        for rejection in rejections:
            self._answered.add(rejection.signal.event_id)

    def catch_up(self, fills: Iterable[Fill]) -> int:
        """Take the journaled ``fills`` the book lacks (see ``StrategyStage.catch_up``)."""
        before = len(self.book.applied_orders)
        for fill in fills:
            self.on_fill(fill)
        return len(self.book.applied_orders) - before

    def on_rejection(self, rejection: Rejection) -> None:
        view = self.view
        view.open_orders.close(rejection.signal.event_id)
        view.open_limits.close(rejection.signal.event_id)

    def on_time(self, now: datetime) -> None:
        if self.waiting:
            self.waiting.expire(now)

    def drain(self) -> None:
        self.waiting.reject_all("input ended before a first price for {instrument} arrived")

    def waiting_ids(self) -> set[UUID]:
        """The signals waiting for a first price: across processes, their records are not
        committed while they wait (see ``Transport.add_held_events``)."""
        return self.waiting.ids()

    def waiting_signals(self) -> list[Signal]:
        """The signals waiting for a first price, left waiting (a backtest keeps them with the
        state it stores: see ``runtime.in_flight``)."""
        return self.waiting.signals()

    def place_again(self, orders: Iterable[tuple[Signal, Order]]) -> None:
        """Pass on orders that passed the validators in the run that stored a backtest's state
        and were still waiting at its executor, each with the signal it was made from: counted
        open, as they were, and not judged again (the prices and books are not those they
        were judged on)."""
        view = self.view
        for signal, order in orders:
            key = (signal.strategy_id, signal.instrument)
            view.open_orders.add(key, signal)
            if signal.order_type is _LIMIT:
                view.open_limits.add(key, signal)
            self.publish(Topics.ORDERS, order, order.instrument)

    def hand_over(self, moving: Callable[[str], bool]) -> None:
        """The instruments ``moving`` names may move to another risk process (a rebalance):
        the signals waiting for their first price are published again (the same signals, ids
        kept) for the process that gets those instruments, and no longer wait here."""
        taken = self.waiting.take(moving)
        for signal in taken:
            self.publish(Topics.SIGNALS, signal, signal.instrument, direct=False)
        _say_handed_over(self.services.logger, "signal(s) waiting for a first price", taken, "risk")


class ExecutionStage(Stage):
    """Hands prices and orders to the configured executor and publishes what it reports."""

    role = "execution"
    topics = (Topics.MARKET, Topics.ORDERS)

    def __init__(self, services: StageServices, executor: Executor) -> None:
        super().__init__(services)
        self.executor = executor
        # Across processes, an order read again after a crash (see waiting_ids) whose signal
        # the journals show answered is not executed again.
        self._outcomes = KnownOutcomes(OUTCOMES_REMEMBERED)
        executor.bind(
            ExecutionContext(
                ids=services.ids,
                clock=services.clock,
                emit=self.emit,
                logger=services.logger.getChild("executor"),
            )
        )

    def routes(self) -> dict[str, Callable[[Any], None]]:
        return {Topics.MARKET: self.executor.on_market, Topics.ORDERS: self.on_order}

    def on_order(self, order: Order | Cancel) -> None:
        if self._outcomes and _signal_id(order) in self._outcomes:
            # Read again after a crash (records after a waiting order's are read again too),
            # its signal has its outcome (a fill, a rejection), for a cancel of it too.
            self.services.status.duplicates_ignored += 1
            return
        if type(order) is Cancel:
            on_cancel = getattr(self.executor, "on_cancel", None)
            if on_cancel is None:  # not an Executor subclass: say so, as the base class does
                report_cannot_cancel(self.services.logger, self.executor, order)
            else:
                on_cancel(order)
        else:
            self.executor.on_order(order)  # type: ignore[arg-type]

    def direct_method(self, topic: str) -> Callable[[Any], None]:
        # Published orders go straight to the executor; a Cancel never takes the direct way
        # (the risk stage sends it through the transport, which calls on_order above).
        if topic == Topics.ORDERS and not self._outcomes:
            return self.executor.on_order
        return super().direct_method(topic)

    def emit(self, event: Fill | Rejection) -> None:
        if isinstance(event, Fill):
            self.publish(Topics.FILLS, event, event.instrument)
        elif isinstance(event, Rejection):
            self.services.status.rejections[event.validator] += 1
            self.publish(Topics.REJECTIONS, event, event.signal.instrument)
        else:
            raise TypeError(f"an executor may emit Fill or Rejection, not {type(event).__name__}")

    def on_time(self, now: datetime) -> None:
        self.executor.on_time(now)

    def drain(self) -> None:
        self.executor.drain()

    def remember_filled(self, fills: Iterable[Fill]) -> None:
        """The signals of ``fills`` (the journal) have their outcome: an order or a cancel of
        one of them, read again, is not executed again."""
        self._outcomes.remember_filled(fills)

    def remember_rejected(self, rejections: Iterable[Rejection]) -> None:
        """The signals of ``rejections`` (the persistence's journal of them) have their
        outcome: an order or a cancel of one of them, read again, is not executed again (an
        order cancelled before a crash must not fill after it)."""
        self._outcomes.remember_rejected(rejections)

    def catch_up(self, fills: Iterable[Fill]) -> int:
        """Remember the journal's ``fills`` when the role is assigned input (see
        ``Pipeline._catch_up_when_assigned``); nothing is applied here: 0."""
        self.remember_filled(fills)
        return 0

    def waiting_ids(self) -> Collection[UUID]:
        """The orders the executor keeps waiting: across processes, their records are not
        committed while they wait (see ``Transport.add_held_events``)."""
        waiting = getattr(self.executor, "waiting_order_ids", None)
        return () if waiting is None else waiting()

    def hand_over(self, moving: Callable[[str], bool]) -> None:
        """The instruments for which ``moving(instrument)`` is true may move to another
        execution process (a rebalance: see ``Transport.add_revocation_hook``): the executor's
        orders waiting for them are published again for whichever process gets them, as new
        orders (new ids) of the same signals. The new ids keep them from being taken for
        orders delivered again, also by this process should the instruments come back to it."""
        hand_over = getattr(self.executor, "hand_over", None)
        if hand_over is None:
            return
        orders = hand_over(moving)
        for order in orders:
            again = order.model_copy(update={"event_id": self.services.ids.new_id()})
            self.publish(Topics.ORDERS, again, again.instrument, direct=False)
        _say_handed_over(self.services.logger, "waiting order(s)", orders, "execution")


def _signal_id(order: Order | Cancel) -> UUID:
    return order.signal.event_id if type(order) is Cancel else order.signal_id  # type: ignore[union-attr]


def _say_handed_over(
    logger: logging.Logger, what: str, events: Sequence[Signal | Order], role: str
) -> None:
    """Log what a stage handed over at a rebalance (see ``Transport.add_revocation_hook``)."""
    if events:
        logger.info(
            "handed %d %s of %s over to the %s process that gets those instruments now",
            len(events),
            what,
            ", ".join(sorted({event.instrument for event in events})),
            role,
        )
