"""The stock paper trader against the executor conformance suite, and the suite against
executors that break the contract (so a broken plugin cannot pass it)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from uuid6 import uuid7

from tradeloom.components import Executor
from tradeloom.events import Fill, MarketEvent, Order, Rejection
from tradeloom.testing.executors import (
    START,
    ExecutorConformance,
    ExecutorHarness,
    make_bar,
    make_order,
)
from tradeloom_paper.trader import PaperTrader


class TestPaperTraderNextPrice(ExecutorConformance):
    @pytest.fixture
    def executor(self) -> Executor:
        return PaperTrader(fill_at="next")


class TestPaperTraderLastPriceWithCosts(ExecutorConformance):
    @pytest.fixture
    def executor(self) -> Executor:
        return PaperTrader(
            fill_at="last", commission_bps=Decimal("7.5"), slippage_bps=Decimal("12")
        )


# --------------------------------------------------------------------------------------------
# Executors that break the contract fail the suite.


class Careless(Executor):
    """Fills market orders at the last price; configurable ways of getting it wrong."""

    def __init__(
        self,
        *,
        drop: bool = False,
        twice: bool = False,
        own_ids: bool = False,
        ignore_limit: bool = False,
        half: bool = False,
    ) -> None:
        self.drop, self.twice, self.own_ids = drop, twice, own_ids
        self.ignore_limit, self.half = ignore_limit, half
        self.last: dict[str, Decimal] = {}
        self.waiting: list[Order] = []

    def on_market(self, event: MarketEvent) -> None:
        self.last[event.instrument] = event.price
        waiting, self.waiting = self.waiting, []
        for order in waiting:
            self.on_order(order)

    def on_order(self, order: Order) -> None:
        if self.drop:
            return
        price = self.last.get(order.instrument)
        if price is None:
            self.waiting.append(order)
            return
        if order.limit_price is not None and not self.ignore_limit:
            self.ctx.emit(
                Rejection(
                    event_id=self.ctx.ids.new_id(),
                    ts=self.ctx.clock.now(),
                    signal={
                        "event_id": order.signal_id,
                        "ts": order.ts,
                        "strategy_id": order.strategy_id,
                        "instrument": order.instrument,
                        "side": order.side,
                        "quantity": order.quantity,
                        "order_type": order.order_type,
                        "limit_price": order.limit_price,
                    },
                    validator="careless",
                    reason="limit orders are not supported",
                )
            )
            return
        for _ in range(2 if self.twice else 1):
            self.ctx.emit(
                Fill(
                    event_id=uuid7() if self.own_ids else self.ctx.ids.new_id(),
                    ts=self.ctx.clock.now(),
                    order_id=order.event_id,
                    signal_id=order.signal_id,
                    strategy_id=order.strategy_id,
                    instrument=order.instrument,
                    side=order.side,
                    quantity=order.quantity / 2 if self.half else order.quantity,
                    price=price,
                )
            )


suite = ExecutorConformance()


def test_a_careful_careless_executor_passes_the_basics() -> None:
    harness = ExecutorHarness(Careless())
    suite.test_market_order_fills_once(harness, side="buy")  # type: ignore[arg-type]
    harness = ExecutorHarness(Careless())
    suite.test_limit_prices_are_respected(harness)


def test_suite_refuses_dropped_orders() -> None:
    with pytest.raises(AssertionError, match="has 0 outcomes"):
        suite.test_every_order_ends_in_exactly_one_outcome(ExecutorHarness(Careless(drop=True)))


def test_suite_refuses_two_fills_for_one_order() -> None:
    with pytest.raises(AssertionError, match="two fills for one order"):
        suite.test_market_order_on_ticks(ExecutorHarness(Careless(twice=True)))


def test_suite_refuses_ids_not_from_the_context() -> None:
    with pytest.raises(AssertionError, match="not minted by ctx"):
        suite.test_exact_decimal_quantity(ExecutorHarness(Careless(own_ids=True)))


def test_suite_refuses_partial_quantities() -> None:
    with pytest.raises(AssertionError, match="one fill per order"):
        suite.test_exact_decimal_quantity(ExecutorHarness(Careless(half=True)))


def test_suite_refuses_a_limit_buy_filled_above_its_limit() -> None:
    with pytest.raises(AssertionError, match="limit buy at 95 filled at 100"):
        suite.test_limit_prices_are_respected(ExecutorHarness(Careless(ignore_limit=True)))


def test_suite_refuses_redelivered_orders_filled_twice() -> None:
    with pytest.raises(AssertionError, match="two fills for one order"):
        suite.test_same_order_twice_gives_one_outcome(ExecutorHarness(Careless()))


class SaysNothingWaits(PaperTrader):
    """Keeps resting orders, and fills them later, but says none waits."""

    def waiting_orders(self) -> list[Order]:
        return []


class TellsAnotherOrder(PaperTrader):
    def waiting_orders(self) -> list[Order]:
        return [order.model_copy(update={"quantity": 2}) for order in super().waiting_orders()]


def test_suite_refuses_an_executor_that_hides_or_misstates_its_waiting_orders() -> None:
    with pytest.raises(AssertionError, match="the resting order filled later: it was waiting"):
        suite.test_waiting_orders_are_told_and_left_waiting(
            ExecutorHarness(SaysNothingWaits(fill_at="next"))
        )
    with pytest.raises(AssertionError, match="not the order waiting"):
        suite.test_waiting_orders_are_told_and_left_waiting(
            ExecutorHarness(TellsAnotherOrder(fill_at="next"))
        )


def test_harness_outcome_names_the_order() -> None:
    harness = ExecutorHarness(Careless(drop=True))
    harness.market(make_bar("ACME", "1", "1", START))
    order = make_order("ACME", "buy", "2")
    harness.send(order)
    with pytest.raises(AssertionError, match=f"order {order.event_id} .*has 0 outcomes"):
        harness.outcome(order)
