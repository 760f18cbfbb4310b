"""ctx.cancel(): a resting order is taken back, answered by a rejection by "cancel"."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from tradeloom import Strategy
from tradeloom.components import ExecutionContext, Executor
from tradeloom.events import (
    CANCELLED,
    Bar,
    Cancel,
    Fill,
    MarketTick,
    Order,
    Rejection,
    Side,
    Signal,
)
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.strategy import StrategyContext
from tradeloom.testing import bars, merge, run_strategy, ticks
from tradeloom_paper.trader import PaperTrader


class RestingBuy(Strategy):
    """Buys ``X`` at ``limit`` on the first bar; cancels it on bar ``cancel_on`` (0-based)."""

    def __init__(self, limit: str, cancel_on: int, instrument: str = "X") -> None:
        self.limit, self.cancel_on, self.instrument = limit, cancel_on, instrument
        self.count = 0
        self.signal: Signal | None = None
        self.cancelled: list[bool] = []
        self.open_after_cancel: list[Decimal] = []
        self.rejections: list[Rejection] = []
        self.fills: list[Fill] = []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if self.count == 0:
            self.signal = ctx.buy(self.instrument, 1, limit_price=self.limit)
        if self.count == self.cancel_on and self.signal is not None:
            self.cancelled.append(ctx.cancel(self.signal))
            self.open_after_cancel.append(ctx.open_quantity(self.instrument))
        self.count += 1

    on_tick = on_bar  # type: ignore[assignment]

    def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
        self.rejections.append(rejection)

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.fills.append(fill)


def test_a_resting_limit_order_is_cancelled_and_never_fills_afterwards() -> None:
    # The limit 9 is reached only on the fourth bar (10 down to 8.5), after the cancel on the
    # second.
    data = bars("X", ["10", "10", "10", "8.5"])
    strategy = RestingBuy(limit="9", cancel_on=1)
    result = run_strategy(strategy, data)
    assert strategy.cancelled == [True]
    assert result.fills == [] and strategy.fills == []
    (rejection,) = strategy.rejections
    assert rejection.signal == strategy.signal
    assert (rejection.validator, rejection.reason) == (CANCELLED, "cancelled by the strategy")
    # Answered at once in one process: nothing open right after the call.
    assert strategy.open_after_cancel == [Decimal(0)]
    assert (result.summary()["rejections"], result.summary()["cancels"]) == (1, 1)
    assert "  rejections      1 (1 of them cancels)" in result.format_summary()


def test_cancelling_a_filled_signal_sends_nothing_and_says_so() -> None:
    data = bars("X", ["10", "8", "10"])  # the second bar goes down to 8
    strategy = RestingBuy(limit="9", cancel_on=2)  # filled on the second bar
    result = run_strategy(strategy, data)
    assert strategy.cancelled == [False]
    assert [fill.price for fill in result.fills] == [Decimal(9)]
    assert strategy.rejections == [] and result.rejections == []


def test_a_signal_waiting_for_a_first_price_is_cancelled_by_the_risk_stage() -> None:
    # Y has no price until its tick; the buy of Y waits in the risk stage and is cancelled.
    class BuysYOnX(RestingBuy):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:  # type: ignore[override]
            if tick.instrument == "X":
                super().on_bar(tick, ctx)  # type: ignore[arg-type]

    data = merge(ticks("X", ["10", "10"]), ticks("Y", ["5"], start=ticks("X", ["1", "1"])[1].ts))
    strategy = BuysYOnX(limit="6", cancel_on=1, instrument="Y")
    result = run_strategy(strategy, data)
    assert strategy.cancelled == [True]
    assert result.fills == []
    (rejection,) = strategy.rejections
    assert rejection.validator == CANCELLED
    assert rejection.reason == "cancelled by the strategy before a first price came"


def test_a_signal_refused_by_a_validator_is_not_open_to_cancel() -> None:
    class SellsThenCancels(Strategy):
        def __init__(self) -> None:
            self.cancelled: list[bool] = []

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if not self.cancelled:
                signal = ctx.sell("X", 1)  # refused at once by no_short
                self.cancelled.append(ctx.cancel(signal))

    strategy = SellsThenCancels()
    result = run_strategy(strategy, bars("X", ["10", "11"]), validators=[{"name": "no_short"}])
    assert strategy.cancelled == [False]
    assert [r.validator for r in result.rejections] == ["no_short"]


def test_cancel_takes_only_the_strategys_own_signals() -> None:
    class Misuses(Strategy):
        def __init__(self) -> None:
            self.errors: list[str] = []

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if self.errors:
                return
            signal = ctx.buy("X", 1, limit_price="1")
            for wrong in (signal.event_id, signal.model_copy(update={"strategy_id": "other"})):
                try:
                    ctx.cancel(wrong)  # type: ignore[arg-type]
                except (TypeError, ValueError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    strategy = Misuses()
    run_strategy(strategy, bars("X", ["10", "11"]), strategy_id="mine")
    assert strategy.errors[0] == (
        "TypeError: cancel() takes the Signal that buy() or sell() returned, not UUID"
    )
    assert strategy.errors[1].startswith("ValueError: signal ")
    assert strategy.errors[1].endswith(
        "is strategy 'other''s, not 'mine''s: a strategy cancels only its own signals"
    )


class _FillsNextBarOnly(Executor):
    """An executor without on_cancel: fills every order at the next bar's open."""

    def __init__(self) -> None:
        self.waiting: list[Order] = []

    def on_market(self, event: Any) -> None:
        for order in self.waiting:
            self.ctx.emit(
                Fill(
                    event_id=self.ctx.ids.new_id(),
                    ts=event.ts,
                    order_id=order.event_id,
                    signal_id=order.signal_id,
                    strategy_id=order.strategy_id,
                    instrument=order.instrument,
                    side=order.side,
                    quantity=order.quantity,
                    price=event.open,
                )
            )
        self.waiting = []

    def on_order(self, order: Order) -> None:
        self.waiting.append(order)


def _with_executor(name: str, factory: Any) -> Any:
    from tradeloom import hookimpl

    class Plugin:
        @hookimpl
        def tradeloom_register_executors(self) -> dict[str, Any]:
            return {name: factory}

    return Plugin()


class _CancelsAtOnce(Strategy):
    def __init__(self) -> None:
        self.cancelled: list[bool] = []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not self.cancelled:
            self.cancelled.append(ctx.cancel(ctx.buy("X", 1)))


def test_an_executor_that_cannot_cancel_logs_it_and_the_order_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = _CancelsAtOnce()
    with caplog.at_level(logging.WARNING):
        result = run_strategy(
            strategy,
            bars("X", ["10", "11"], opens=["10", "10.5"]),
            config={"executor": {"name": "no_cancel"}},
            plugins=[_with_executor("no_cancel", _FillsNextBarOnly)],
        )
    assert strategy.cancelled == [True]
    assert [fill.price for fill in result.fills] == [Decimal("10.5")]
    assert "executor _FillsNextBarOnly cannot cancel orders: the order of signal" in caplog.text


def _bound_trader() -> tuple[PaperTrader, list[Any]]:
    trader = PaperTrader(fill_at="next")
    emitted: list[Any] = []
    clock = SimulatedClock()

    class Ids:
        def new_id(self) -> Any:
            return uuid4()

    trader.bind(
        ExecutionContext(
            ids=Ids(), clock=clock, emit=emitted.append, logger=logging.getLogger("test")
        )
    )
    return trader, emitted


def _signal() -> Signal:
    (bar,) = bars("X", ["10"])
    return Signal(
        event_id=uuid4(),
        ts=bar.ts,
        strategy_id="s",
        instrument="X",
        side=Side.BUY,
        quantity=Decimal(1),
    )


def test_the_paper_trader_answers_a_cancel_of_an_order_it_never_had() -> None:
    # Waiting orders live in memory: one lost with an earlier executor process is answered,
    # so the strategy does not count it as open for ever.
    trader, emitted = _bound_trader()
    signal = _signal()
    trader.on_cancel(Cancel(event_id=uuid4(), ts=signal.ts, signal=signal))
    (rejection,) = emitted
    assert rejection.signal == signal and rejection.validator == CANCELLED
    assert rejection.reason == (
        "cancelled by the strategy: the order was not open at the paper trader"
    )
    trader.on_cancel(Cancel(event_id=uuid4(), ts=signal.ts, signal=signal))
    assert len(emitted) == 1  # answered once


def test_the_paper_trader_ignores_a_cancel_of_an_order_it_filled() -> None:
    trader, emitted = _bound_trader()
    signal = _signal()
    order = Order(
        event_id=uuid4(),
        ts=signal.ts,
        signal_id=signal.event_id,
        strategy_id="s",
        instrument="X",
        side=Side.BUY,
        quantity=Decimal(1),
    )
    trader.on_order(order)
    (_first, second) = bars("X", ["10", "11"])
    trader.on_market(second)
    (fill,) = emitted
    assert isinstance(fill, Fill) and fill.signal_id == signal.event_id
    trader.on_cancel(Cancel(event_id=uuid4(), ts=signal.ts, signal=signal))
    assert emitted == [fill]


def test_the_paper_trader_fills_one_order_per_signal() -> None:
    # A risk process that restarts before committing a signal judges it again: a second order
    # (a new order id) for the same signal must not fill a second time.
    trader, emitted = _bound_trader()
    signal = _signal()
    first, again = (
        Order(
            event_id=uuid4(),
            ts=signal.ts,
            signal_id=signal.event_id,
            strategy_id="s",
            instrument="X",
            side=Side.BUY,
            quantity=Decimal(1),
        )
        for _ in range(2)
    )
    trader.on_order(first)
    trader.on_order(again)
    trader.on_market(bars("X", ["10", "11"])[1])
    assert [type(event) for event in emitted] == [Fill]
    assert emitted[0].order_id == first.event_id


class _RefusesTwice(_FillsNextBarOnly):
    """Refuses every order twice, as an executor that restarted may answer a cancel of an
    order it had rejected when it stopped."""

    def on_order(self, order: Order) -> None:
        signal = order.to_signal()
        for reason in ("input ended", "cancelled: not open"):
            self.ctx.emit(
                Rejection(
                    event_id=self.ctx.ids.new_id(),
                    ts=order.ts,
                    signal=signal,
                    validator="twice",
                    reason=reason,
                )
            )


class _Duck:
    """An executor that does not subclass Executor (and so has no on_cancel)."""

    def bind(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx

    def on_market(self, event: Any) -> None:
        pass

    def on_order(self, order: Order) -> None:
        pass

    def on_time(self, now: Any) -> None:
        pass

    def drain(self) -> None:
        pass


def test_a_strategy_hears_of_a_signals_refusal_once() -> None:
    class Counts(Strategy):
        def __init__(self) -> None:
            self.reasons: list[str] = []

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if not self.reasons:
                ctx.buy("X", 1)

        def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
            self.reasons.append(rejection.reason)

    strategy = Counts()
    run_strategy(
        strategy,
        bars("X", ["10"]),
        config={"executor": {"name": "twice"}},
        plugins=[_with_executor("twice", _RefusesTwice)],
    )
    assert strategy.reasons == ["input ended"]


def test_an_executor_that_is_not_an_executor_subclass_is_told_it_cannot_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = _CancelsAtOnce()
    with caplog.at_level(logging.WARNING):
        run_strategy(
            strategy,
            bars("X", ["10", "11"]),
            config={"executor": {"name": "duck"}},
            plugins=[_with_executor("duck", _Duck)],
        )
    assert strategy.cancelled == [True]
    assert "executor _Duck cannot cancel orders: the order of signal" in caplog.text


class _FillsOnCancelAndRefusesToo(_FillsNextBarOnly):
    """Fills the order a cancel asks about and answers the cancel as well, as a paper trader
    with ``dedupe_window = 0`` (or one that restarted) answers a cancel of an order it filled."""

    def on_cancel(self, cancel: Cancel) -> None:
        self.on_market(bars("X", ["10"])[0])  # fills what waits, at 10
        self.ctx.emit(
            Rejection(
                event_id=self.ctx.ids.new_id(),
                ts=cancel.ts,
                signal=cancel.signal,
                validator=CANCELLED,
                reason="cancelled by the strategy: the order was not open",
            )
        )


def test_a_strategy_hears_of_a_cancelled_signal_that_filled_only_its_fill() -> None:
    class Records(_CancelsAtOnce):
        def __init__(self) -> None:
            super().__init__()
            self.outcomes: list[str] = []

        def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
            self.outcomes.append("fill")

        def on_rejection(self, rejection: Rejection, ctx: StrategyContext) -> None:
            self.outcomes.append(rejection.validator)

    strategy = Records()
    result = run_strategy(
        strategy,
        bars("X", ["10", "11"]),
        config={"executor": {"name": "fills_and_refuses"}},
        plugins=[_with_executor("fills_and_refuses", _FillsOnCancelAndRefusesToo)],
    )
    assert strategy.cancelled == [True]
    assert strategy.outcomes == ["fill"]
    assert [fill.price for fill in result.fills] == [Decimal(10)]
