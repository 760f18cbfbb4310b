"""What a process's books do when fills come twice: from the journal (catching up after a
rebalance) and then from the fills topic; and a journal write that is cancelled."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tradeloom import Strategy
from tradeloom.events import Fill
from tradeloom.portfolio import PortfolioBook
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.portfolio_stage import PortfolioStage
from tradeloom.runtime.results import RunResult
from tradeloom.runtime.stages import StageServices, StrategyStage
from tradeloom.runtime.status import PipelineStatus
from tradeloom.testing.persistence import make_fill
from tradeloom_memory.persistence import MemoryPersistence
from tradeloom_memory.transport import MemoryTransport
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
