"""What a process's books do when fills come twice: from the journal (catching up after a
rebalance) and then from the fills topic; and a journal write that is cancelled."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from uuid6 import uuid7

from tradeloom import Strategy
from tradeloom.events import Cancel, Fill, Order
from tradeloom.portfolio import PortfolioBook
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.portfolio_stage import PortfolioStage
from tradeloom.runtime.results import RunResult
from tradeloom.runtime.stages import ExecutionStage, RiskStage, StageServices, StrategyStage
from tradeloom.runtime.status import PipelineStatus
from tradeloom.runtime.transport import Topics
from tradeloom.settings import PendingSettings
from tradeloom.testing import ticks
from tradeloom.testing.persistence import make_fill, make_rejection
from tradeloom_memory.persistence import MemoryPersistence
from tradeloom_memory.transport import MemoryTransport
from tradeloom_paper.trader import PaperTrader
from tradeloom_uuid7.generator import Uuid7Generator

TS = datetime(2024, 3, 1, tzinfo=UTC)


def services() -> StageServices:
    return StageServices(
        transport=MemoryTransport(),
        ids=Uuid7Generator(),
        clock=SimulatedClock(TS),
        status=PipelineStatus(),
        logger=logging.getLogger("test"),
    )


def fill_of(signal: Any) -> Fill:
    return make_fill(
        signal.strategy_id,
        instrument=signal.instrument,
        quantity=signal.quantity,
        price=10,
        commission=0,
        signal_id=signal.event_id,
    )


def order_of(signal: Any) -> Order:
    return Order(
        event_id=uuid7(),
        ts=TS,
        signal_id=signal.event_id,
        strategy_id=signal.strategy_id,
        instrument=signal.instrument,
        side=signal.side,
        quantity=signal.quantity,
    )


class Told(Strategy):
    def __init__(self) -> None:
        self.fills: list[Fill] = []

    def on_fill(self, fill: Fill, ctx: Any) -> None:
        self.fills.append(fill)


def test_a_journaled_fill_of_an_open_signal_answers_it_when_caught_up() -> None:
    strategy = Told()
    book = PortfolioBook(Decimal(1000))
    stage = StrategyStage(services(), {"s": (strategy, None)}, book)
    ctx = stage.contexts["s"]
    signal = ctx.buy("X", 3)  # on its way (nothing subscribes to signals here)
    assert ctx.open_quantity("X") == 3
    fill = fill_of(signal)
    # After a rebalance the journal brings it first (the topic may never bring it again: a
    # member that had the partition meanwhile committed past it).
    assert stage.catch_up([fill]) == 1
    assert ctx.open_quantity("X") == 0 and ctx.position("X") == 3
    assert strategy.fills == [fill]
    assert stage.catch_up([fill]) == 0  # the next rebalance's catch-up
    stage.on_fill(fill)  # and the topic's copy: nothing changes, nothing is told twice
    assert ctx.position("X") == 3 and strategy.fills == [fill]


def test_a_fill_in_the_book_already_still_answers_its_open_signal() -> None:
    strategy = Told()
    book = PortfolioBook(Decimal(1000))
    stage = StrategyStage(services(), {"s": (strategy, None)}, book)
    ctx = stage.contexts["s"]
    fill = fill_of(ctx.buy("X", 3))
    book.apply_fill(fill)  # taken by the book some other way first
    stage.on_fill(fill)
    assert ctx.open_quantity("X") == 0 and strategy.fills == [fill]


def test_a_cancelled_journal_write_keeps_its_fills_for_the_next_attempt() -> None:
    class Stalls(MemoryPersistence):
        stall = True

        async def record_fills(self, fills: Any) -> None:  # type: ignore[override]
            if self.stall:
                await anyio.sleep_forever()  # waits out a lock another process holds
            super().record_fills(fills)

    persistence = Stalls()
    persistence.open()
    book = PortfolioBook(Decimal(1000))
    stage = PortfolioStage(services(), book, persistence, RunResult(), snapshot_interval_seconds=1)
    fill = make_fill("s", instrument="X", quantity=1, price=10, commission=0)
    stage.on_fill(fill)

    async def stopped_while_writing() -> None:
        with anyio.move_on_after(0.05):
            await stage.flush_journal()
        Stalls.stall = False
        assert await stage.flush_journal()

    anyio.run(stopped_while_writing)
    assert persistence.load_fills() == [fill]


@pytest.mark.parametrize("already_in_book", [False, True])
def test_catching_up_applies_only_what_the_book_lacks(already_in_book: bool) -> None:
    book = PortfolioBook(Decimal(1000))
    stage = StrategyStage(services(), {"s": (Told(), None)}, book)
    fills = [fill_of(stage.contexts["s"].buy("X", 2)), fill_of(stage.contexts["s"].buy("Y", 1))]
    other = fill_of(stage.contexts["s"].buy("Z", 1)).model_copy(update={"strategy_id": "gone"})
    if already_in_book:
        book.apply_fill(fills[0])
    assert stage.catch_up([*fills, other]) == (2 if already_in_book else 3)
    assert book.portfolio("s").position("X") == 2 and book.portfolio("s").position("Y") == 1
    assert book.portfolio("gone").position("Z") == 1  # a strategy of another process


def test_an_execution_process_does_not_execute_again_what_the_journal_shows_filled() -> None:
    # A restarted execution process reads again the orders after one that waited (its
    # record was not committed): those whose signals the journal shows filled, and cancels
    # of them, are not executed again; the others are.
    executed: list[Any] = []
    paper = PaperTrader(fill_at="next")
    stage = ExecutionStage(services(), paper)
    ctx = StrategyStage(services(), {"s": (Told(), None)}, PortfolioBook(Decimal(1000))).contexts[
        "s"
    ]
    filled, waiting = ctx.buy("X", 1), ctx.buy("X", 2)
    stage.remember_filled([fill_of(filled)])
    assert stage.direct_method(Topics.ORDERS) == stage.on_order  # not straight to the executor
    paper.on_order = executed.append  # type: ignore[method-assign]
    paper.on_cancel = executed.append  # type: ignore[method-assign]
    orders = [order_of(signal) for signal in (filled, waiting)]
    for order in orders:
        stage.on_order(order)
    stage.on_order(Cancel(event_id=uuid7(), ts=TS, signal=filled))
    assert executed == [orders[1]]
    assert stage.services.status.duplicates_ignored == 2


def test_a_long_rejections_journal_does_not_push_out_the_fills_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fills and journaled rejections are remembered apart: a journal of more rejections than
    # the stages keep (100,000; 10 here) once pushed the fills out, and a filled signal read
    # again after a crash was decided and filled a second time.
    monkeypatch.setattr("tradeloom.runtime.stages.OUTCOMES_REMEMBERED", 10)
    ctx = StrategyStage(services(), {"s": (Told(), None)}, PortfolioBook(Decimal(1000))).contexts[
        "s"
    ]
    filled, refused = ctx.buy("X", 1), ctx.buy("X", 2)
    journal = [make_rejection("s", signal_id=refused.event_id)]
    journal += [make_rejection("s") for _ in range(20)]
    executed: list[Any] = []
    paper = PaperTrader(fill_at="next")
    execution = ExecutionStage(services(), paper)
    risk = RiskStage(services(), [], PortfolioBook(Decimal(1000)), PendingSettings())
    for stage in (execution, risk):
        stage.remember_filled([fill_of(filled)])
        stage.remember_rejected(journal)
    paper.on_order = executed.append  # type: ignore[method-assign]
    execution.on_order(order_of(filled))
    risk.on_signal(filled)
    assert executed == []  # the fill still counts; the first rejection is long forgotten
    assert execution.services.status.duplicates_ignored == 1
    assert risk.services.status.duplicates_ignored == 1


def test_the_orders_waiting_at_the_executor_hold_their_records() -> None:
    paper = PaperTrader(fill_at="next")
    stage = ExecutionStage(services(), paper)
    ctx = StrategyStage(services(), {"s": (Told(), None)}, PortfolioBook(Decimal(1000))).contexts[
        "s"
    ]
    orders = [order_of(ctx.buy(name, 1)) for name in ("X", "Y")]
    for order in orders:
        stage.on_order(order)
    assert stage.waiting_ids() == {order.event_id for order in orders}
    assert stage.direct_method(Topics.ORDERS) == paper.on_order  # nothing to skip: straight
    paper.on_market(ticks("X", ["10"], start=TS + timedelta(seconds=1))[0])  # fills X
    assert stage.waiting_ids() == {orders[1].event_id}


def test_a_signal_read_again_waits_for_a_first_price_from_its_own_time_on() -> None:
    # A risk process that restarted, or took the signal over at a rebalance, reads it late:
    # its wait began when the signal was made, not when this process read it.
    stage_services = services()
    clock = stage_services.clock
    stage = RiskStage(
        stage_services, [], PortfolioBook(Decimal(1000)), PendingSettings(max_wait_seconds=60)
    )
    ctx = StrategyStage(services(), {"s": (Told(), None)}, PortfolioBook(Decimal(1000))).contexts[
        "s"
    ]
    made = ctx.buy("X", 1)  # at TS
    clock.advance(TS + timedelta(seconds=50))
    fresh = ctx.buy("X", 1).model_copy(update={"ts": TS + timedelta(seconds=50)})
    stage.on_signal(fresh)
    stage.on_signal(made)  # read after a later one: it has waited longer still
    assert stage.waiting_ids() == {made.event_id, fresh.event_id}
    stage.on_time(TS + timedelta(seconds=61))
    assert stage_services.status.rejections == {"pending": 1}
    assert stage.waiting_ids() == {fresh.event_id}
