"""A conformance suite for executor plugins.

An executor (a :class:`tradeloom.components.Executor`) turns orders into fills or rejections.
It proves that it keeps the contract by running this suite against itself. Subclass
:class:`ExecutorConformance` in a test module and tell it how to build your executor::

    import pytest
    from tradeloom.testing.executors import ExecutorConformance

    from my_plugin import MyExecutor


    class TestMyExecutor(ExecutorConformance):
        @pytest.fixture
        def executor(self):
            return MyExecutor(commission_bps=5)  # new and unbound

The contract, checked by the suite:

- every order ends in exactly one :class:`~tradeloom.events.Fill` or
  :class:`~tradeloom.events.Rejection` once :meth:`~tradeloom.components.Executor.drain` has
  run; nothing is dropped silently, and an order delivered twice (a redelivery) gives one
  outcome;
- a fill carries its order's ids, strategy, instrument, side and exact quantity, a positive
  Decimal price, a commission of zero or more, an ``event_id`` from ``ctx.ids`` and a time no
  earlier than the order's;
- a limit buy never fills above its limit, a limit sell never below it;
- a rejection carries the order's signal, a validator name and a reason;
- the executor only emits fills and rejections, and works inside a real backtest.

:class:`ExecutorHarness` drives an executor by hand (for a plugin's own tests).

This module imports pytest: use it from test code only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest
from uuid6 import uuid7

from tradeloom import hookimpl
from tradeloom.components import ExecutionContext, Executor
from tradeloom.events import (
    CANCELLED,
    Bar,
    Cancel,
    Fill,
    MarketEvent,
    MarketTick,
    Order,
    OrderType,
    Rejection,
    Side,
)
from tradeloom.strategy import Strategy, StrategyContext
from tradeloom.testing._support import ManualClock, RecordingIds, component_logger

__all__ = [
    "ExecutorConformance",
    "ExecutorHarness",
    "make_bar",
    "make_order",
    "make_tick",
]

START = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
"""Time of the first market event the suite sends."""

Number = Decimal | int | str


def make_order(
    instrument: str = "ACME",
    side: Side | str = Side.BUY,
    quantity: Number = "10",
    *,
    limit_price: Number | None = None,
    strategy_id: str = "conformance",
    ts: datetime = START,
    order_id: UUID | None = None,
) -> Order:
    """Build a valid :class:`Order` (a limit order when ``limit_price`` is given)."""
    return Order(
        event_id=order_id or uuid7(),
        ts=ts,
        signal_id=uuid7(),
        strategy_id=strategy_id,
        instrument=instrument,
        side=Side(side),
        quantity=Decimal(quantity),
        order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
        limit_price=None if limit_price is None else Decimal(limit_price),
    )


def make_tick(instrument: str, price: Number, ts: datetime) -> MarketTick:
    """A tick at ``price``."""
    return MarketTick(event_id=uuid7(), ts=ts, instrument=instrument, last_price=Decimal(price))


def make_bar(
    instrument: str,
    open_: Number,
    close: Number,
    ts: datetime,
    *,
    low: Number | None = None,
    high: Number | None = None,
    interval: timedelta = timedelta(minutes=1),
) -> Bar:
    """A bar ending at ``ts``; high and low span open and close unless given."""
    o, c = Decimal(open_), Decimal(close)
    return Bar(
        event_id=uuid7(),
        ts=ts,
        instrument=instrument,
        open=o,
        high=Decimal(high) if high is not None else max(o, c),
        low=Decimal(low) if low is not None else min(o, c),
        close=c,
        volume=Decimal(100),
        start=ts - interval,
        end=ts,
    )


class ExecutorHarness:
    """Binds an executor to test stand-ins of the runtime and drives it like the execution
    stage does: the clock moves to each market event's time before the executor sees it,
    orders are stamped with the current time, and everything emitted is recorded."""

    def __init__(self, executor: Executor, *, start: datetime = START) -> None:
        self.executor = executor
        self.ids = RecordingIds()
        self.clock = ManualClock(start)
        self.emitted: list[Any] = []
        self.on_emit: Callable[[Any], None] | None = None
        """Called with each event right after it is recorded, while the executor is still in
        the call that emitted it (as a strategy's ``on_fill`` runs in one process)."""
        executor.bind(
            ExecutionContext(
                ids=self.ids,
                clock=self.clock,
                emit=self._record,
                logger=component_logger("executor"),
            )
        )

    def _record(self, event: Any) -> None:
        self.emitted.append(event)
        if self.on_emit is not None:
            self.on_emit(event)

    def market(self, *events: MarketEvent) -> None:
        """Deliver market events in order."""
        for event in events:
            self.clock.advance(event.ts)
            self.executor.on_market(event)

    def order(
        self,
        instrument: str = "ACME",
        side: Side | str = Side.BUY,
        quantity: Number = "10",
        *,
        limit_price: Number | None = None,
        strategy_id: str = "conformance",
    ) -> Order:
        """Send a new order stamped with the current time; return it."""
        order = make_order(
            instrument,
            side,
            quantity,
            limit_price=limit_price,
            strategy_id=strategy_id,
            ts=self.clock.now(),
        )
        self.executor.on_order(order)
        return order

    def send(self, order: Order) -> None:
        """Deliver an order built elsewhere (e.g. the same order a second time)."""
        self.executor.on_order(order)

    def cancel(self, order: Order) -> Cancel:
        """Ask the executor to cancel ``order`` (as a strategy's ``ctx.cancel()`` of the
        signal it was made from does); return the request."""
        cancel = Cancel(event_id=uuid7(), ts=self.clock.now(), signal=order.to_signal())
        self.executor.on_cancel(cancel)
        return cancel

    def time_passes(self, to: datetime) -> None:
        self.clock.advance(to)
        self.executor.on_time(to)

    def drain(self) -> None:
        self.executor.drain()

    @property
    def fills(self) -> list[Fill]:
        return [event for event in self.emitted if isinstance(event, Fill)]

    @property
    def rejections(self) -> list[Rejection]:
        return [event for event in self.emitted if isinstance(event, Rejection)]

    def outcomes(self, order: Order) -> list[Fill | Rejection]:
        """What the executor emitted about ``order``."""
        found: list[Fill | Rejection] = []
        for event in self.emitted:
            if (isinstance(event, Fill) and event.order_id == order.event_id) or (
                isinstance(event, Rejection) and event.signal.event_id == order.signal_id
            ):
                found.append(event)
        return found

    def outcome(self, order: Order) -> Fill | Rejection:
        """The single outcome of ``order``; fails the test unless there is exactly one."""
        found = self.outcomes(order)
        assert len(found) == 1, (
            f"order {order.event_id} ({order.side} {order.quantity} {order.instrument} "
            f"{order.order_type}) has {len(found)} outcomes, expected exactly one fill or "
            f"rejection: {found!r}"
        )
        return found[0]

    def check_emitted(self) -> None:
        """Every emitted event is a valid Fill or Rejection with an id from ``ctx.ids``."""
        for index, event in enumerate(self.emitted):
            assert isinstance(event, Fill | Rejection), (
                f"emitted item {index} is a {type(event).__name__}; an executor emits Fill or "
                "Rejection only"
            )
            assert type(event).model_validate(event.model_dump()) == event, (
                f"emitted {event!r} does not survive validation unchanged"
            )
            assert event.event_id in self.ids.minted, (
                f"{type(event).__name__} {event.event_id} has an event_id not minted by "
                "ctx.ids; take event ids from ctx.ids.new_id()"
            )
        fill_orders = [fill.order_id for fill in self.fills]
        assert len(fill_orders) == len(set(fill_orders)), "two fills for one order"


def assert_fill_matches(fill: Fill, order: Order) -> None:
    """``fill`` is a valid execution of all of ``order``."""
    assert fill.order_id == order.event_id
    assert fill.signal_id == order.signal_id
    assert fill.strategy_id == order.strategy_id
    assert fill.instrument == order.instrument
    assert fill.side == order.side
    assert fill.quantity == order.quantity, (
        f"fill quantity {fill.quantity} != order quantity {order.quantity}: one fill per order"
    )
    assert fill.quantity.as_tuple() == order.quantity.as_tuple(), (
        f"fill quantity {fill.quantity!s} lost the order's exact digits {order.quantity!s}"
    )
    assert isinstance(fill.price, Decimal) and fill.price.is_finite() and fill.price > 0
    assert isinstance(fill.commission, Decimal) and fill.commission >= 0
    assert fill.ts.utcoffset() == timedelta(0)
    assert fill.ts >= order.ts, f"fill at {fill.ts} is earlier than its order at {order.ts}"


def assert_rejection_matches(rejection: Rejection, order: Order) -> None:
    """``rejection`` refers to ``order``'s signal and says who refused it and why."""
    signal = rejection.signal
    assert signal.event_id == order.signal_id
    assert (signal.strategy_id, signal.instrument, signal.side) == (
        order.strategy_id,
        order.instrument,
        order.side,
    )
    assert signal.quantity == order.quantity
    assert isinstance(rejection.validator, str) and rejection.validator.strip()
    assert isinstance(rejection.reason, str) and rejection.reason.strip()


def steps(
    count: int, start: datetime = START, step: timedelta = timedelta(minutes=1)
) -> list[datetime]:
    """``count`` times, ``step`` apart from ``start``."""
    return [start + index * step for index in range(count)]


# --------------------------------------------------------------------------------------------
# A strategy for the end-to-end test


class _RoundTrip(Strategy):
    """Buys on the second bar of each instrument and sells the position on the fourth."""

    def __init__(self, quantity: Decimal) -> None:
        self.quantity = quantity
        self.bars: dict[str, int] = {}
        self.signals = 0
        self.outcomes = 0

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        seen = self.bars[bar.instrument] = self.bars.get(bar.instrument, 0) + 1
        if seen == 2:
            ctx.buy(bar.instrument, self.quantity)
            self.signals += 1
        elif seen == 4 and ctx.position(bar.instrument) > 0:
            ctx.sell(bar.instrument, ctx.position(bar.instrument))
            self.signals += 1

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.outcomes += 1

    def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
        self.outcomes += 1


class _ExecutorPlugin:
    """Registers one executor instance under a name, as a plugin would register a class."""

    def __init__(self, name: str, executor: Executor) -> None:
        self.name = name
        self.executor = executor

    @hookimpl
    def tradeloom_register_executors(self) -> Mapping[str, Any]:
        return {self.name: lambda: self.executor}


# --------------------------------------------------------------------------------------------
# The suite


class ExecutorConformance:
    """Contract tests for an :class:`~tradeloom.components.Executor`.

    Subclass it (name the subclass ``Test...``) and override the :meth:`executor` fixture. Each
    test gets a new executor and binds it to an :class:`ExecutorHarness`.
    """

    #: The instrument the suite trades (and a second one for multi-instrument tests).
    instrument: ClassVar[str] = "ACME"
    other_instrument: ClassVar[str] = "BETA"

    # ---- what an executor provides -----------------------------------------------------------

    @pytest.fixture
    def executor(self) -> Executor:
        """Override: return a new, unbound executor."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the `executor` fixture to return a new Executor"
        )

    # ---- plumbing ----------------------------------------------------------------------------

    @pytest.fixture
    def conformance_harness(self, executor: Executor) -> ExecutorHarness:
        assert isinstance(executor, Executor), (
            f"the executor fixture returned {type(executor).__name__}, "
            "not a tradeloom.components.Executor"
        )
        return ExecutorHarness(executor)

    def bars(self, closes: Sequence[Number], instrument: str | None = None) -> list[Bar]:
        """Minute bars after :data:`START`, each opening at the previous close."""
        instrument = instrument or self.instrument
        times = steps(len(closes), START + timedelta(minutes=1))
        opens = [closes[0], *closes[:-1]]
        return [
            make_bar(instrument, o, c, ts) for o, c, ts in zip(opens, closes, times, strict=True)
        ]

    # ---- market orders -----------------------------------------------------------------------

    def test_is_an_executor(self, executor: Executor) -> None:
        assert isinstance(executor, Executor)

    @pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
    def test_market_order_fills_once(
        self, conformance_harness: ExecutorHarness, side: Side
    ) -> None:
        harness = conformance_harness
        first, *later = self.bars(["100", "101", "102", "103"])
        harness.market(first)
        order = harness.order(self.instrument, side, "10")
        harness.market(*later)
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(order)
        assert isinstance(outcome, Fill), (
            f"a market order with prices after it was rejected: {outcome!r}"
        )
        assert_fill_matches(outcome, order)

    def test_market_order_on_ticks(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        times = steps(4, START, timedelta(seconds=1))
        harness.market(make_tick(self.instrument, "50.25", times[0]))
        order = harness.order(self.instrument, Side.BUY, "3")
        harness.market(
            *(
                make_tick(self.instrument, p, t)
                for p, t in zip(["50.30", "50.20", "50.40"], times[1:], strict=True)
            )
        )
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(order)
        assert isinstance(outcome, Fill)
        assert_fill_matches(outcome, order)

    def test_exact_decimal_quantity(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        first, *later = self.bars(["2.5", "2.6", "2.7"])
        harness.market(first)
        order = harness.order(self.instrument, Side.BUY, "0.00100")
        harness.market(*later)
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(order)
        assert isinstance(outcome, Fill)
        assert_fill_matches(outcome, order)
        assert str(outcome.quantity) == "0.00100"

    def test_order_before_any_price(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        order = harness.order(self.instrument, Side.BUY, "1")
        harness.market(*self.bars(["10", "11", "12"]))
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(order)
        if isinstance(outcome, Fill):
            assert_fill_matches(outcome, order)
        else:
            assert_rejection_matches(outcome, order)

    def test_order_with_no_later_price_is_settled_by_drain(
        self, conformance_harness: ExecutorHarness
    ) -> None:
        harness = conformance_harness
        harness.market(*self.bars(["10", "11"]))
        order = harness.order(self.instrument, Side.SELL, "5")
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(order)
        if isinstance(outcome, Fill):
            assert_fill_matches(outcome, order)
        else:
            assert_rejection_matches(outcome, order)

    def test_same_order_twice_gives_one_outcome(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        first, *later = self.bars(["100", "101", "102"])
        harness.market(first)
        order = harness.order(self.instrument, Side.BUY, "4")
        harness.send(order)  # redelivered by an at-least-once transport
        harness.market(*later)
        harness.send(order)
        harness.drain()
        harness.check_emitted()
        harness.outcome(order)

    def test_every_order_ends_in_exactly_one_outcome(
        self, conformance_harness: ExecutorHarness
    ) -> None:
        harness = conformance_harness
        a, b = self.instrument, self.other_instrument
        a_bars = self.bars(["20", "21", "19", "22", "23", "18"], a)
        b_bars = self.bars(["5.10", "5.00", "5.20", "5.05", "4.90", "5.30"], b)
        orders: list[Order] = []
        for index, (bar_a, bar_b) in enumerate(zip(a_bars, b_bars, strict=True)):
            harness.market(bar_a, bar_b)
            if index % 2 == 0:
                orders.append(harness.order(a, Side.BUY, index + 1))
                orders.append(harness.order(b, Side.SELL, "0.5", limit_price="5.00"))
            else:
                orders.append(harness.order(a, Side.SELL, "1", limit_price="1"))
                orders.append(harness.order(b, Side.BUY, "2", limit_price="0.01"))
            harness.time_passes(bar_a.ts + timedelta(seconds=30))
        harness.drain()
        harness.check_emitted()
        for order in orders:
            outcome = harness.outcome(order)
            if isinstance(outcome, Fill):
                assert_fill_matches(outcome, order)
            else:
                assert_rejection_matches(outcome, order)
        assert len(harness.emitted) == len(orders)

    # ---- limit orders ------------------------------------------------------------------------

    def test_limit_prices_are_respected(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        times = steps(5, START + timedelta(minutes=1))
        harness.market(make_bar(self.instrument, "100", "100", times[0]))
        buy = harness.order(self.instrument, Side.BUY, "1", limit_price="95")
        sell = harness.order(self.instrument, Side.SELL, "1", limit_price="105")
        for ts, (o, c, low, high) in zip(
            times[1:],
            [("100", "97", "96", "101"), ("97", "94", "93", "98"), ("94", "104", "94", "106")],
            strict=False,
        ):
            harness.market(make_bar(self.instrument, o, c, ts, low=low, high=high))
        harness.drain()
        harness.check_emitted()
        for order in (buy, sell):
            outcome = harness.outcome(order)
            if isinstance(outcome, Rejection):
                assert_rejection_matches(outcome, order)
                continue
            assert_fill_matches(outcome, order)
            assert order.limit_price is not None
            if order.side is Side.BUY:
                assert outcome.price <= order.limit_price, (
                    f"limit buy at {order.limit_price} filled at {outcome.price}"
                )
            else:
                assert outcome.price >= order.limit_price, (
                    f"limit sell at {order.limit_price} filled at {outcome.price}"
                )

    def test_unreachable_limit_never_fills(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        first, *later = self.bars(["100", "99", "101", "100"])
        harness.market(first)
        buy = harness.order(self.instrument, Side.BUY, "1", limit_price="1")
        sell = harness.order(self.instrument, Side.SELL, "1", limit_price="10000")
        harness.market(*later)
        assert harness.fills == [], f"an unreachable limit order filled: {harness.fills!r}"
        harness.drain()
        harness.check_emitted()
        for order in (buy, sell):
            outcome = harness.outcome(order)
            assert isinstance(outcome, Rejection), f"unreachable limit order filled: {outcome!r}"
            assert_rejection_matches(outcome, order)

    # ---- telling what waits (for executors that offer waiting_orders) -----------------------

    def test_waiting_orders_are_told_and_left_waiting(
        self, conformance_harness: ExecutorHarness
    ) -> None:
        harness = conformance_harness
        if type(harness.executor).waiting_orders is Executor.waiting_orders:
            pytest.skip("this executor does not tell its waiting orders (optional)")
        first, *later = self.bars(["100", "100", "80"])
        harness.market(first)
        resting = harness.order(self.instrument, Side.BUY, "1", limit_price="90")
        told = harness.executor.waiting_orders()
        assert told is not None, "waiting_orders() returned None: it cannot tell after all"
        told_ids = [order.event_id for order in told]
        assert told_ids in ([], [resting.event_id]), (
            f"waiting_orders() told {told_ids!r}; the only order waiting is {resting.event_id}"
        )
        for order in told:
            asked = ("signal_id", "instrument", "side", "quantity", "order_type", "limit_price")
            assert [getattr(order, name) for name in asked] == [
                getattr(resting, name) for name in asked
            ], f"waiting_orders() told {order!r}, not the order waiting ({resting!r})"
        harness.market(*later)  # left waiting: the price goes through the limit
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(resting)
        if told:
            assert isinstance(outcome, Fill), f"the order told as waiting did not fill: {outcome!r}"
            assert_fill_matches(outcome, resting)
            assert harness.executor.waiting_orders() == [], "a filled order is told as waiting"
        else:  # refused at once, then: one that fills later was waiting, and was not told
            assert not isinstance(outcome, Fill), (
                "waiting_orders() told no order, but the resting order filled later: it was "
                "waiting (a resumed backtest would lose it)"
            )

    # ---- cancelling (for executors that override on_cancel) ---------------------------------

    def _needs_cancel(self, harness: ExecutorHarness) -> None:
        if type(harness.executor).on_cancel is Executor.on_cancel:
            pytest.skip("this executor does not cancel orders (on_cancel is not overridden)")

    def test_a_cancelled_resting_order_is_answered_once_and_never_fills(
        self, conformance_harness: ExecutorHarness
    ) -> None:
        harness = conformance_harness
        self._needs_cancel(harness)
        first, *later = self.bars(["100", "100", "80", "80"])
        harness.market(first)
        order = harness.order(self.instrument, Side.BUY, "1", limit_price="90")
        harness.market(later[0])
        harness.cancel(order)
        harness.market(*later[1:])  # the price goes through the limit: too late
        harness.drain()
        harness.check_emitted()
        outcome = harness.outcome(order)
        assert isinstance(outcome, Rejection), f"a cancelled order was filled: {outcome!r}"
        assert_rejection_matches(outcome, order)
        assert outcome.validator == CANCELLED, (
            f"a cancellation is answered by a rejection with validator {CANCELLED!r}, "
            f"not {outcome.validator!r}"
        )

    def test_a_cancel_from_a_fills_callback_is_kept_and_loses_no_other_order(
        self, conformance_harness: ExecutorHarness
    ) -> None:
        # One cancels the other: in one process a strategy's on_fill, which may cancel another
        # waiting order or send a new one, runs while the executor is still filling.
        harness = conformance_harness
        self._needs_cancel(harness)
        first, *later = self.bars(["10", "10", "8", "4", "4"])
        harness.market(first)
        other = harness.order(self.instrument, Side.BUY, "1", limit_price="5")
        trigger = harness.order(self.instrument, Side.BUY, "1", limit_price="9")
        bystander = harness.order(self.instrument, Side.BUY, "1", limit_price="9")

        def cancel_the_other(event: Any) -> None:
            if isinstance(event, Fill) and event.order_id == trigger.event_id:
                harness.cancel(other)

        harness.on_emit = cancel_the_other
        harness.market(*later)  # down through 9 (trigger, bystander), then through 5 (other)
        harness.on_emit = None
        harness.drain()
        harness.check_emitted()
        assert isinstance(harness.outcome(trigger), Fill)
        assert isinstance(harness.outcome(bystander), Fill), (
            "an order waiting beside the one whose fill cancelled another was lost: "
            f"{harness.outcomes(bystander)!r}"
        )
        cancelled = harness.outcome(other)
        assert isinstance(cancelled, Rejection) and cancelled.validator == CANCELLED, (
            f"the order cancelled from a fill's callback was not cancelled: {cancelled!r}"
        )

    def test_a_cancel_after_the_fill_changes_nothing(
        self, conformance_harness: ExecutorHarness
    ) -> None:
        harness = conformance_harness
        self._needs_cancel(harness)
        first, *later = self.bars(["100", "101", "102"])
        harness.market(first)
        order = harness.order(self.instrument, Side.BUY, "1")
        harness.market(*later)
        harness.drain()
        harness.cancel(order)
        harness.check_emitted()
        outcome = harness.outcome(order)  # exactly one: the fill, and no rejection after it
        assert isinstance(outcome, Fill), f"a market order with later prices: {outcome!r}"

    # ---- idle ----------------------------------------------------------------------------------

    def test_idle_executor_emits_nothing(self, conformance_harness: ExecutorHarness) -> None:
        harness = conformance_harness
        harness.market(*self.bars(["10", "10.5", "11"]))
        harness.time_passes(START + timedelta(hours=1))
        harness.drain()
        harness.drain()
        assert harness.emitted == []

    # ---- in a pipeline ---------------------------------------------------------------------------

    def test_runs_in_a_backtest(self, executor: Executor) -> None:
        from tradeloom.testing.harness import run_strategy

        strategy = _RoundTrip(Decimal("5"))
        events: Iterable[MarketEvent] = sorted(
            [
                *self.bars(["10", "11", "12", "13", "12", "11"]),
                *self.bars(["20", "19", "18", "19", "20", "21"], self.other_instrument),
            ],
            key=lambda event: event.ts,
        )
        plugin = _ExecutorPlugin("conformance-executor", executor)
        result = run_strategy(
            strategy,
            events,
            strategy_id="round-trip",
            config={"executor": {"name": "conformance-executor"}},
            plugins=[plugin],
        )
        assert strategy.signals == 4
        assert len(result.fills) + len(result.rejections) == strategy.signals, (
            "every signal must end in a fill or a rejection"
        )
        assert strategy.outcomes == strategy.signals
        snapshot = result.snapshots["round-trip"]
        for instrument in (self.instrument, self.other_instrument):
            signed = sum(
                (f.quantity * f.side.sign for f in result.fills if f.instrument == instrument),
                Decimal(0),
            )
            held = snapshot.positions.get(instrument)
            assert (held.quantity if held else Decimal(0)) == signed
