"""Dirty-set snapshots: only changed portfolios are written, failures stay dirty, a change
during a save is not lost, and a snapshot never refers to a fill the journal lacks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import anyio
import pytest
import uuid6

from tradeloom.errors import PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot, Rejection, Side
from tradeloom.portfolio import PortfolioBook
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.portfolio_stage import PortfolioStage
from tradeloom.runtime.results import RunResult
from tradeloom.runtime.stages import StageServices
from tradeloom.runtime.status import PipelineStatus
from tradeloom.testing.persistence import make_rejection
from tradeloom_memory.persistence import MemoryPersistence
from tradeloom_memory.transport import MemoryTransport

TS = datetime(2024, 3, 1, tzinfo=UTC)


class Ids:
    def new_id(self):  # type: ignore[no-untyped-def]
        return uuid6.uuid7()


class RecordingPersistence(MemoryPersistence):
    """The real in-memory back end, recording each batch and failing on request."""

    def __init__(self) -> None:
        super().__init__()
        self.saved_batches: list[list[str]] = []
        self.journaled_batches: list[int] = []
        self.fail_saves = 0
        self.during_save: Callable[[], None] | None = None
        self.during_journal: Callable[[], None] | None = None

    def record_fills(self, fills: Sequence[Fill]) -> None:
        self.journaled_batches.append(len(fills))
        hook, self.during_journal = self.during_journal, None
        if hook:
            hook()
        super().record_fills(fills)

    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        hook, self.during_save = self.during_save, None
        if hook:
            hook()
        if self.fail_saves:
            self.fail_saves -= 1
            raise OSError("disk full")
        self.saved_batches.append([s.portfolio_id for s in snapshots])
        super().save_snapshots(snapshots)


def fill(pid: str, quantity: str = "1", price: str = "10") -> Fill:
    return Fill(
        event_id=uuid6.uuid7(),
        ts=TS,
        order_id=uuid6.uuid7(),
        signal_id=uuid6.uuid7(),
        strategy_id=pid,
        instrument="X",
        side=Side.BUY,
        quantity=Decimal(quantity),
        price=Decimal(price),
    )


@pytest.fixture
def stage() -> PortfolioStage:
    persistence = RecordingPersistence()
    persistence.open()
    book = PortfolioBook(Decimal(1000))
    for index in range(1000):
        book.portfolio(f"p{index:04d}")
    services = StageServices(
        transport=MemoryTransport(),
        ids=Ids(),
        clock=SimulatedClock(TS),
        status=PipelineStatus(),
        logger=logging.getLogger("test"),
    )
    return PortfolioStage(services, book, persistence, RunResult(), snapshot_interval_seconds=1)


def persistence_of(stage: PortfolioStage) -> RecordingPersistence:
    assert isinstance(stage.persistence, RecordingPersistence)
    return stage.persistence


def test_of_1000_portfolios_only_the_3_that_changed_are_written(stage: PortfolioStage) -> None:
    store = persistence_of(stage)
    anyio.run(stage.checkpoint)
    assert len(store.saved_batches[-1]) == 1000  # every portfolio's first state
    for pid in ("p0007", "p0500", "p0999"):
        stage.on_fill(fill(pid))
    anyio.run(stage.checkpoint)
    assert store.saved_batches[-1] == ["p0007", "p0500", "p0999"]
    assert anyio.run(stage.checkpoint) == []  # nothing changed since
    assert len(store.saved_batches) == 2


def test_a_failed_save_keeps_portfolios_dirty_and_is_retried(stage: PortfolioStage) -> None:
    store = persistence_of(stage)
    anyio.run(stage.checkpoint)
    stage.on_fill(fill("p0001"))
    store.fail_saves = 1
    assert anyio.run(stage.checkpoint) == []
    assert stage.services.status.persistence_errors == 1
    assert "disk full" in (stage.services.status.last_persistence_error or "")
    assert list(stage.book.dirty()) == ["p0001"]
    saved = anyio.run(stage.checkpoint)
    assert [s.portfolio_id for s in saved] == ["p0001"]
    assert store.load_snapshots()["p0001"].fills_applied == 1
    assert stage.services.status.last_persistence_error is None


def test_a_change_during_a_save_is_not_lost(stage: PortfolioStage) -> None:
    store = persistence_of(stage)
    anyio.run(stage.checkpoint)
    stage.on_fill(fill("p0002"))
    late = fill("p0002", quantity="2")
    store.during_save = lambda: stage.on_fill(late)
    anyio.run(stage.checkpoint)
    assert store.load_snapshots()["p0002"].fills_applied == 1  # saved before the change
    assert list(stage.book.dirty()) == ["p0002"]
    anyio.run(stage.checkpoint)
    snapshot = store.load_snapshots()["p0002"]
    assert snapshot.fills_applied == 2 and snapshot.last_fill_id == late.event_id
    assert [f.event_id for f in store.load_fills("p0002")][-1] == late.event_id


def test_a_fill_arriving_while_the_journal_is_written_is_journaled_before_the_snapshot(
    stage: PortfolioStage,
) -> None:
    store = persistence_of(stage)
    stage.on_fill(fill("p0003"))
    racing = fill("p0003", quantity="5")
    store.during_journal = lambda: stage.on_fill(racing)
    anyio.run(stage.checkpoint)
    assert store.journaled_batches == [1, 1]
    snapshot = store.load_snapshots()["p0003"]
    assert snapshot.last_fill_id == racing.event_id
    recovered = PortfolioBook(Decimal(1000))
    recovered.restore(store.load_snapshots(), store.load_fills())  # would raise if missing
    assert recovered.portfolio("p0003").position("X") == Decimal(6)


def test_a_failed_journal_write_keeps_the_fills_and_saves_no_snapshot(
    stage: PortfolioStage,
) -> None:
    store = persistence_of(stage)
    anyio.run(stage.checkpoint)
    stage.on_fill(fill("p0004"))

    def broken(fills: Sequence[Fill]) -> None:
        raise OSError("connection reset")

    store.record_fills = broken  # type: ignore[method-assign]
    assert anyio.run(stage.checkpoint) == []
    assert len(store.saved_batches) == 1
    del store.record_fills
    anyio.run(stage.checkpoint)
    assert [f.strategy_id for f in store.load_fills()] == ["p0004"]
    assert store.saved_batches[-1] == ["p0004"]


def test_a_save_in_flight_is_in_the_status_until_it_returns(stage: PortfolioStage) -> None:
    # A back end that hangs fails nothing: the health check sees the write that has not
    # returned (persistence_errors' max_write_seconds).
    release = anyio.Event()
    started = anyio.Event()
    in_flight: list[dict[str, datetime]] = []

    async def hanging_save(snapshots: Sequence[PortfolioSnapshot]) -> None:
        started.set()
        await release.wait()

    stage.persistence.save_snapshots = hanging_save  # type: ignore[method-assign]
    stage.on_fill(fill("p0001"))
    status = stage.services.status

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stage.checkpoint)
            await started.wait()
            in_flight.append(dict(status.persistence_in_flight))
            release.set()

    before = datetime.now(UTC)
    anyio.run(main)
    (during,) = in_flight
    assert list(during) == ["saving snapshots"]
    assert before <= during["saving snapshots"] <= datetime.now(UTC)
    assert status.persistence_in_flight == {}


class RefusesRejections(RecordingPersistence):
    """A store whose rejections table may not be made (a role without CREATE), until told."""

    refuse = True

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        if self.refuse:
            raise PersistenceError("recording rejections failed: permission denied for schema")
        super().record_rejections(rejections)


def test_a_failing_rejections_journal_does_not_hold_up_the_fills(
    stage: PortfolioStage, caplog: pytest.LogCaptureFixture
) -> None:
    store = RefusesRejections()
    store.open()
    stage.persistence = store
    stage.journal_rejections = True
    first, second = make_rejection("p0001"), make_rejection("p0002")
    stage.on_rejection(first)
    stage.on_fill(fill("p0001"))
    with caplog.at_level(logging.DEBUG, logger="test"):
        assert anyio.run(stage.flush_journal) is True  # the fills' journal is complete
        stage.on_rejection(second)
        assert anyio.run(stage.flush_journal) is True
    assert len(store.load_fills()) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once; then at DEBUG
    assert "journaling rejections" in warnings[0].getMessage()
    assert stage.services.status.last_persistence_error is None  # not a failed state write
    store.refuse = False  # the owner made the table: the kept rejections are journaled
    anyio.run(stage.flush_journal)
    assert [r.signal.strategy_id for r in store.load_rejections()] == ["p0001", "p0002"]


def test_a_fill_of_a_strategy_the_run_does_not_have_is_said_once(
    stage: PortfolioStage, caplog: pytest.LogCaptureFixture
) -> None:
    # Across processes, another deployment on the same topic prefix would mix its fills into
    # this book: booked (the fill happened), but not in silence.
    with caplog.at_level(logging.WARNING, logger="test"):
        stage.on_fill(fill("p0001"))
        stage.on_fill(fill("ghost"))
        stage.on_fill(fill("ghost"))
    (warning,) = caplog.records
    assert warning.getMessage().startswith(
        "a fill of strategy 'ghost', which this run does not have, opens a portfolio of its own"
    )
    assert stage.book.portfolios["ghost"].position("X") == 2
