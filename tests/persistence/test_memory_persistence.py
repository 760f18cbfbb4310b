"""The memory back end against the persistence conformance suite, plus its own behaviour."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

import tradeloom_memory.persistence as memory_module
from tradeloom.components import Persistence
from tradeloom.errors import CorruptStateError, PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot
from tradeloom.testing.persistence import (
    BlockingPersistence,
    PersistenceConformance,
    make_fill,
    make_snapshot,
)
from tradeloom_memory.persistence import MemoryPersistence, MemoryStore


class TestMemoryPersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self) -> MemoryPersistence:
        return MemoryPersistence()

    def reopen(self, persistence: Persistence) -> Persistence:
        assert isinstance(persistence, MemoryPersistence)
        return MemoryPersistence(store=persistence.store)

    def corrupt_a_snapshot(self, persistence: Persistence, portfolio_id: str) -> str:
        assert isinstance(persistence, MemoryPersistence)
        stored = persistence.store.snapshots[portfolio_id]
        persistence.store.snapshots[portfolio_id] = stored.replace('"cash":"9.90"', '"cash":"lots"')
        return f"portfolio {portfolio_id!r}: stored snapshot is invalid: cash:"

    def corrupt_a_fill(self, persistence: Persistence, portfolio_id: str) -> str:
        assert isinstance(persistence, MemoryPersistence)
        fills = persistence.store.fills
        (index,) = [i for i, (owner, _) in enumerate(fills) if owner == portfolio_id]
        fills[index] = (portfolio_id, fills[index][1].replace('"price":"9.90"', '"price":"x"'))
        return f"fill #{index + 1}, portfolio {portfolio_id!r}: stored fill is invalid: price:"


def test_use_before_open_is_refused() -> None:
    memory = MemoryPersistence()
    with pytest.raises(PersistenceError, match="not open; call open"):
        memory.load_snapshots()
    with pytest.raises(PersistenceError, match="not open"):
        memory.record_fills([make_fill()])


def test_snapshot_under_wrong_key_is_corrupt() -> None:
    memory = MemoryPersistence()
    memory.open()
    memory.save_snapshots([make_snapshot("a")])
    memory.store.snapshots["b"] = memory.store.snapshots["a"]
    with pytest.raises(
        CorruptStateError, match=r"portfolio .b.: the stored snapshot belongs to portfolio .a."
    ):
        memory.load_snapshots()


def test_invalid_fill_names_its_position_and_portfolio() -> None:
    memory = MemoryPersistence()
    memory.open()
    memory.record_fills([make_fill("a"), make_fill("b")])
    owner, data = memory.store.fills[1]
    memory.store.fills[1] = (owner, data.replace('"side":"buy"', '"side":"hold"'))
    with pytest.raises(
        CorruptStateError, match=r"fill #2, portfolio .b.: stored fill is invalid: side:"
    ):
        memory.load_fills()
    assert len(memory.load_fills("a")) == 1


def test_stored_events_of_a_newer_schema_version_are_refused() -> None:
    memory = MemoryPersistence()
    memory.open()
    memory.record_fills([make_fill("a"), make_fill("b")])
    memory.save_snapshots([make_snapshot("a")])
    owner, data = memory.store.fills[1]
    memory.store.fills[1] = (owner, data.replace('"schema_version":1', '"schema_version":7'))
    memory.store.snapshots["a"] = memory.store.snapshots["a"].replace(
        '"schema_version":1', '"schema_version":2'
    )
    with pytest.raises(PersistenceError) as fill_error:
        memory.load_fills()
    assert not isinstance(fill_error.value, CorruptStateError)
    assert "memory store: fill #2, portfolio 'b': stored fill has schema_version 7, newer " in (
        str(fill_error.value)
    )
    assert "upgrade tradeloom" in str(fill_error.value)
    with pytest.raises(PersistenceError, match=r"portfolio 'a': stored snapshot has schema_vers"):
        memory.load_snapshots()
    assert len(memory.load_fills("a")) == 1  # the current-version fill still reads


def test_concurrent_writers_store_each_order_once() -> None:
    memory = MemoryPersistence(MemoryStore())
    memory.open()
    fills = [make_fill(str(i % 5)) for i in range(200)]

    def write() -> None:
        for start in range(0, len(fills), 10):
            memory.record_fills(fills[start : start + 10])

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memory.load_fills()) == 200
    assert {fill.order_id for fill in memory.load_fills()} == {f.order_id for f in fills}


def test_the_journal_reads_as_json_in_the_order_recorded() -> None:
    memory = MemoryPersistence()
    memory.open()
    first, second, third = make_fill("a"), make_fill("b"), make_fill("a")
    memory.record_fills([first, second])
    assert memory.store.fills == [("a", first.model_dump_json()), ("b", second.model_dump_json())]
    memory.record_fills([third, first])  # first's order is journaled already
    assert memory.store.fills[2:] == [("a", third.model_dump_json())]
    assert memory.load_fills() == [first, second, third]
    assert memory.load_fills("a") == [first, third]


def _unencodable_fill(portfolio_id: str) -> Fill:
    values = dict(make_fill(portfolio_id))
    values["price"] = object()  # only model_construct lets such a value in
    return Fill.model_construct(**values)


def test_a_fill_that_cannot_be_encoded_is_reported_on_every_read_and_nothing_doubles() -> None:
    memory = MemoryPersistence()
    memory.open()
    good = make_fill("a")
    memory.record_fills([good, _unencodable_fill("b")])  # found when the journal is read
    for _ in range(2):
        with pytest.raises(PersistenceError, match=r"fill #2 \(order .*, portfolio 'b'\) cannot"):
            memory.load_fills()
    assert memory.store.fill_count() == 2
    assert repr(memory) == "MemoryPersistence(fills=2, snapshots=0)"


def test_a_long_journal_is_encoded_as_it_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "UNENCODED_FILLS_MAX", 2)
    memory = MemoryPersistence()
    memory.open()
    memory.record_fills([make_fill("a"), make_fill("b")])  # two wait
    with pytest.raises(PersistenceError, match=r"fill #3 .* cannot be encoded"):
        memory.record_fills([_unencodable_fill("c")])  # a third: all are encoded now


def test_stores_with_the_same_contents_are_equal_whether_read_or_not() -> None:
    fill = make_fill("a")
    first, second = MemoryPersistence(), MemoryPersistence()
    for memory in (first, second):
        memory.open()
        memory.record_fills([fill])
    assert first.store.fills == [("a", fill.model_dump_json())]  # the first is read
    assert first.store == second.store
    second.record_fills([make_fill("b")])
    assert first.store != second.store


def test_a_batch_with_a_non_fill_stores_nothing() -> None:
    memory = MemoryPersistence()
    memory.open()
    with pytest.raises(AttributeError):
        memory.record_fills([make_fill("a"), "not a fill"])  # type: ignore[list-item]
    assert memory.store.fills == []


def test_repr_counts_contents() -> None:
    memory = MemoryPersistence()
    memory.open()
    memory.record_fills([make_fill()])
    assert repr(memory) == "MemoryPersistence(fills=1, snapshots=0)"


class AsyncMemoryPersistence(Persistence):
    """An async back end (every method a coroutine) over a memory store, to prove the suite
    awaits async methods, all on one event loop."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.inner = MemoryPersistence(store)
        self.loops: set[int] = set()

    async def _on_loop(self) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        assert len(self.loops) == 1, "called on more than one event loop"

    async def open(self) -> None:
        await self._on_loop()
        self.inner.open()

    async def close(self) -> None:
        await self._on_loop()
        self.inner.close()

    async def record_fills(self, fills: Sequence[Fill]) -> None:
        await self._on_loop()
        self.inner.record_fills(fills)

    async def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        await self._on_loop()
        self.inner.save_snapshots(snapshots)

    async def load_snapshots(self) -> dict[str, PortfolioSnapshot]:
        await self._on_loop()
        return self.inner.load_snapshots()

    async def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        await self._on_loop()
        return self.inner.load_fills(portfolio_id)

    async def load_fills_after(self, count: int) -> list[Fill]:
        await self._on_loop()
        return self.inner.load_fills_after(count)


class TestAsyncBackend(PersistenceConformance):
    @pytest.fixture
    def persistence(self) -> AsyncMemoryPersistence:
        return AsyncMemoryPersistence()

    def reopen(self, persistence: Persistence) -> Persistence:
        assert isinstance(persistence, AsyncMemoryPersistence)
        return AsyncMemoryPersistence(persistence.inner.store)

    async def corrupt_a_snapshot(self, persistence: Persistence, portfolio_id: str) -> None:
        assert isinstance(persistence, AsyncMemoryPersistence)
        store = persistence.inner.store
        store.snapshots[portfolio_id] = store.snapshots[portfolio_id].replace('"type"', '"kind"')

    async def corrupt_a_fill(self, persistence: Persistence, portfolio_id: str) -> None:
        assert isinstance(persistence, AsyncMemoryPersistence)
        fills = persistence.inner.store.fills
        fills[:] = [(owner, data[:-1] if owner == portfolio_id else data) for owner, data in fills]

    def test_methods_were_awaited(self, conformance_store: BlockingPersistence) -> None:
        conformance_store.save_snapshots([make_snapshot("x")])
        assert list(conformance_store.load_snapshots()) == ["x"]
        assert isinstance(conformance_store.persistence, AsyncMemoryPersistence)
        assert len(conformance_store.persistence.loops) == 1


def test_built_from_configuration() -> None:
    from tradeloom.plugins import load_plugin_manager

    memory = load_plugin_manager().create("persistence", "memory", {})
    assert isinstance(memory, MemoryPersistence)
    memory.open()
    assert memory.load_snapshots() == {}
