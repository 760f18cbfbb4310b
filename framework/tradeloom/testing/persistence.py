"""A conformance suite for persistence plugins.

A persistence back end (a :class:`tradeloom.components.Persistence`) proves that it keeps the
contract by running this suite against itself. Subclass :class:`PersistenceConformance` in a
test module, tell it how to build your back end, and pytest runs every contract test::

    import pytest
    from tradeloom.testing.persistence import PersistenceConformance

    from my_plugin import MyPersistence


    class TestMyPersistence(PersistenceConformance):
        @pytest.fixture
        def persistence(self, tmp_path):
            # A new, *unopened* instance on fresh, empty storage.
            return MyPersistence(path=tmp_path / "state.db")

        def reopen(self, persistence):
            # Another unopened instance on the same storage (the suite closed the first one).
            return MyPersistence(path=persistence.path)

        def corrupt_a_snapshot(self, persistence, portfolio_id):
            # Damage the stored snapshot of ``portfolio_id`` the way a disk or a careless
            # hand would. Set ``supports_corruption_test = False`` instead if impossible.
            ...

        def corrupt_a_fill(self, persistence, portfolio_id):
            # Optional: damage the one journaled fill of ``portfolio_id`` the same way.
            ...

Methods of the back end may be plain or ``async``: the suite calls each one and, when the
result is awaitable, awaits it on an event loop that lives for the whole test (an anyio
blocking portal), so loop-bound resources such as async connection pools keep working.

This module imports pytest: use it from test code only.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import anyio.from_thread
import pytest
from uuid6 import uuid7

from tradeloom.components import Persistence
from tradeloom.errors import CorruptStateError, PersistenceError
from tradeloom.events import (
    SCHEMA_VERSION,
    Event,
    Fill,
    OrderType,
    PortfolioSnapshot,
    Position,
    Rejection,
    Side,
    Signal,
)

__all__ = [
    "AwaitRunner",
    "BlockingPersistence",
    "PersistenceConformance",
    "assert_exactly_equal",
    "make_fill",
    "make_rejection",
    "make_snapshot",
]

T = TypeVar("T")

BASE_TS = datetime(2024, 3, 1, 9, 15, 0, 123456, tzinfo=UTC)
"""Default timestamp of built events: UTC, with microseconds, so round trips are visible."""

Number = Decimal | str | int


# --------------------------------------------------------------------------------------------
# Builders


def make_fill(
    portfolio_id: str = "alpha",
    *,
    instrument: str = "INFY",
    side: Side | str = Side.BUY,
    quantity: Number = "10",
    price: Number = "100.10",
    commission: Number = "0.0500",
    order_id: UUID | None = None,
    fill_id: UUID | None = None,
    signal_id: UUID | None = None,
    ts: datetime | None = None,
) -> Fill:
    """Build a valid :class:`Fill` of ``portfolio_id`` (the fill's ``strategy_id``).

    Numbers may be given as Decimals, ints or numeric strings; ids are fresh UUIDv7s unless
    given.
    """
    return Fill(
        event_id=fill_id or uuid7(),
        ts=ts or BASE_TS,
        order_id=order_id or uuid7(),
        signal_id=signal_id or uuid7(),
        strategy_id=portfolio_id,
        instrument=instrument,
        side=Side(side),
        quantity=Decimal(quantity),
        price=Decimal(price),
        commission=Decimal(commission),
    )


def make_rejection(
    portfolio_id: str = "alpha",
    *,
    instrument: str = "INFY",
    validator: str = "paper",
    reason: str = "input ended before the order could fill",
    limit_price: Number | None = "100.10",
    signal_id: UUID | None = None,
    ts: datetime | None = None,
) -> Rejection:
    """Build a valid :class:`Rejection` of a signal of ``portfolio_id`` (its strategy id): a
    limit buy unless ``limit_price`` is None. Ids are fresh UUIDv7s unless given."""
    signal = Signal(
        event_id=signal_id or uuid7(),
        ts=ts or BASE_TS,
        strategy_id=portfolio_id,
        instrument=instrument,
        side=Side.BUY,
        quantity=Decimal("10.50"),
        order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
        limit_price=None if limit_price is None else Decimal(limit_price),
        market_ts=ts or BASE_TS,
    )
    return Rejection(
        event_id=uuid7(), ts=ts or BASE_TS, signal=signal, validator=validator, reason=reason
    )


def make_snapshot(
    portfolio_id: str = "alpha",
    *,
    cash: Number = "100000.10",
    equity: Number | None = None,
    positions: Mapping[str, Position | Mapping[str, Any]] | None = None,
    commission_paid: Number = "0",
    fills_applied: int = 0,
    last_fill_id: UUID | None = None,
    snapshot_id: UUID | None = None,
    ts: datetime | None = None,
) -> PortfolioSnapshot:
    """Build a valid :class:`PortfolioSnapshot`; ``equity`` defaults to ``cash``."""
    built_positions = {
        instrument: value if isinstance(value, Position) else Position.model_validate(value)
        for instrument, value in (positions or {}).items()
    }
    return PortfolioSnapshot(
        event_id=snapshot_id or uuid7(),
        ts=ts or BASE_TS,
        portfolio_id=portfolio_id,
        cash=Decimal(cash),
        equity=Decimal(equity if equity is not None else cash),
        positions=built_positions,
        commission_paid=Decimal(commission_paid),
        fills_applied=fills_applied,
        last_fill_id=last_fill_id,
    )


def open_together(stores: Sequence[Any]) -> list[BaseException]:
    """Open ``stores`` (synchronous back ends on the same new storage, as the processes of a
    split deployment starting together) each in a thread of its own, all at once; close
    them; return what their ``open()`` raised. A back end that creates its schema must let
    every one of them open it."""
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def open_one(store: Any) -> None:
        start.wait()
        try:
            store.open()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    return failures


def _exact(value: Any) -> Any:
    """A comparable form of ``value`` in which Decimals keep their exponent (``1.0 != 1.00``)
    and datetimes their UTC offset."""
    if isinstance(value, Decimal):
        return ("Decimal", value.as_tuple())
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    if isinstance(value, Mapping):
        return {key: _exact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(item) for item in value]
    if hasattr(value, "model_dump"):
        return (type(value).__name__, _exact(value.model_dump()))
    return value


def assert_exactly_equal(actual: Any, expected: Any) -> None:
    """Assert two events (or lists/dicts of them) are equal *and* every Decimal kept its exact
    digits and exponent, every datetime its UTC offset."""
    assert actual == expected
    assert _exact(actual) == _exact(expected)


# --------------------------------------------------------------------------------------------
# Calling sync or async back ends


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class AwaitRunner:
    """Resolves what a component's method returns: plain values pass through; awaitables are
    awaited on one event loop (an anyio blocking portal started on first use) so that every
    awaited call of a test shares the loop."""

    def __init__(self, backend: str = "asyncio") -> None:
        self._backend = backend
        self._stack = ExitStack()
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._opened: list[BlockingPersistence] = []

    def resolve(self, result: Any) -> Any:
        if not inspect.isawaitable(result):
            return result
        if self._portal is None:
            self._portal = self._stack.enter_context(
                anyio.from_thread.start_blocking_portal(self._backend)
            )
        return self._portal.call(_await, result)

    def wrap(self, persistence: Persistence) -> BlockingPersistence:
        """Wrap ``persistence``; it is closed (if still open) when the runner closes."""
        wrapped = BlockingPersistence(persistence, self)
        self._opened.append(wrapped)
        return wrapped

    def close(self) -> None:
        """Close every wrapped persistence still open, then stop the event loop."""
        try:
            errors: list[BaseException] = []
            for wrapped in reversed(self._opened):
                try:
                    wrapped.close()
                except Exception as exc:  # every one gets its chance to close
                    errors.append(exc)
            if errors:
                raise errors[0]
        finally:
            self._stack.close()


class BlockingPersistence:
    """Calls a :class:`Persistence` synchronously whether its methods are sync or async."""

    def __init__(self, persistence: Persistence, runner: AwaitRunner) -> None:
        self.persistence = persistence
        self._runner = runner
        self.is_open = False

    def open(self) -> BlockingPersistence:
        self._runner.resolve(self.persistence.open())
        self.is_open = True
        return self

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._runner.resolve(self.persistence.close())

    def record_fills(self, fills: Sequence[Fill]) -> None:
        self._runner.resolve(self.persistence.record_fills(fills))

    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        self._runner.resolve(self.persistence.save_snapshots(snapshots))

    def load_snapshots(self) -> dict[str, PortfolioSnapshot]:
        result = self._runner.resolve(self.persistence.load_snapshots())
        assert isinstance(result, dict), (
            f"load_snapshots must return a dict, got {type(result).__name__}"
        )
        return result

    def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        if portfolio_id is None:
            result = self._runner.resolve(self.persistence.load_fills())
        else:
            result = self._runner.resolve(self.persistence.load_fills(portfolio_id))
        return list(result)

    def load_fills_after(self, count: Any) -> list[Fill]:
        """The back end's optional ``load_fills_after``; the test is skipped without it."""
        load = getattr(self.persistence, "load_fills_after", None)
        if load is None:
            pytest.skip("the back end has no load_fills_after (optional)")
        return list(self._runner.resolve(load(count)))

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """The back end's optional ``record_rejections``; the test is skipped without it."""
        self._runner.resolve(self._optional("record_rejections")(rejections))

    def load_rejections(self, after: Any = 0) -> list[Rejection]:
        """The back end's optional ``load_rejections``; the test is skipped without it."""
        return list(self._runner.resolve(self._optional("load_rejections")(after)))

    def count_rejections(self) -> int:
        """The back end's optional ``count_rejections``; the test is skipped without it."""
        count = self._runner.resolve(self._optional("count_rejections")())
        assert type(count) is int, f"count_rejections must return an int, got {count!r}"
        return count

    def save_metadata(self, items: Mapping[str, str]) -> None:
        """The back end's optional ``save_metadata``; the test is skipped without it."""
        self._runner.resolve(self._optional("save_metadata")(items))

    def load_metadata(self) -> dict[str, str]:
        """The back end's optional ``load_metadata``; the test is skipped without it."""
        result = self._runner.resolve(self._optional("load_metadata")())
        assert isinstance(result, Mapping), (
            f"load_metadata must return a mapping, got {type(result).__name__}"
        )
        return dict(result)

    def _optional(self, name: str) -> Any:
        method = getattr(self.persistence, name, None)
        if method is None:
            pytest.skip(f"the back end has no {name} (optional)")
        return method


# --------------------------------------------------------------------------------------------
# The suite

VICTIM = "victim"
"""Portfolio whose snapshot :meth:`PersistenceConformance.corrupt_a_snapshot` damages."""


class PersistenceConformance:
    """Contract tests for a :class:`~tradeloom.components.Persistence` back end.

    Subclass it (name the subclass ``Test...``), override the :meth:`persistence` fixture and
    :meth:`reopen`, and either implement :meth:`corrupt_a_snapshot` or set
    ``supports_corruption_test = False``. Every test gets fresh, empty storage.
    """

    #: Set to False when the back end's stored data cannot be damaged from a test; the
    #: corruption test is then skipped (with that reason shown), not silently passed.
    supports_corruption_test: ClassVar[bool] = True

    # ---- what a back end provides --------------------------------------------------------

    @pytest.fixture
    def persistence(self) -> Persistence:
        """Override: return a new, unopened back end on fresh, empty storage."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the `persistence` fixture to return a new, "
            "unopened Persistence on empty storage"
        )

    def reopen(self, persistence: Persistence) -> Persistence:
        """Override: return a new, unopened instance on the same storage as ``persistence``
        (which the suite has closed), as a restarted process would build it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement reopen(persistence) returning a new "
            "Persistence on the same storage"
        )

    def corrupt_a_snapshot(self, persistence: Persistence, portfolio_id: str) -> str | None:
        """Override: damage the stored snapshot of ``portfolio_id`` in a back-end specific way
        (invalid JSON, a field of the wrong type...). May be async.

        ``load_snapshots`` must then raise :class:`~tradeloom.errors.CorruptStateError` whose
        message contains the returned string, or ``portfolio_id`` when ``None`` is returned.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement corrupt_a_snapshot(persistence, portfolio_id) "
            "or set supports_corruption_test = False"
        )

    def corrupt_a_fill(self, persistence: Persistence, portfolio_id: str) -> str | None:
        """Optional override: damage the one journaled fill of ``portfolio_id`` as
        :meth:`corrupt_a_snapshot` damages a snapshot. May be async.

        ``load_fills`` must then raise :class:`~tradeloom.errors.CorruptStateError` whose
        message contains the returned string, or ``portfolio_id`` when ``None`` is returned.
        Not overridden, the damaged-fill test is reported as skipped.
        """
        pytest.skip(
            f"{type(self).__name__} does not implement corrupt_a_fill(persistence, portfolio_id)"
        )

    # ---- plumbing --------------------------------------------------------------------------

    @pytest.fixture
    def conformance_runner(self) -> Iterator[AwaitRunner]:
        runner = AwaitRunner()
        yield runner
        runner.close()

    @pytest.fixture
    def conformance_store(
        self, persistence: Persistence, conformance_runner: AwaitRunner
    ) -> BlockingPersistence:
        """The back end under test, opened (and closed after the test)."""
        assert isinstance(persistence, Persistence), (
            f"the persistence fixture returned {type(persistence).__name__}, "
            "not a tradeloom.components.Persistence"
        )
        return conformance_runner.wrap(persistence).open()

    def restart(
        self, conformance_store: BlockingPersistence, runner: AwaitRunner
    ) -> BlockingPersistence:
        """Close ``conformance_store`` and open a new instance on the same storage."""
        conformance_store.close()
        fresh = self.reopen(conformance_store.persistence)
        assert fresh is not conformance_store.persistence, "reopen must build a new instance"
        return runner.wrap(fresh).open()

    # ---- open / close, empty storage ---------------------------------------------------------

    def test_empty_storage_loads_nothing(self, conformance_store: BlockingPersistence) -> None:
        assert conformance_store.load_snapshots() == {}
        assert conformance_store.load_fills() == []
        assert conformance_store.load_fills("alpha") == []

    def test_close_then_reopen_empty_storage(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        again = self.restart(conformance_store, conformance_runner)
        assert again.load_snapshots() == {}
        assert again.load_fills() == []
        again.close()
        assert not again.is_open

    # ---- fills journal -----------------------------------------------------------------------

    def test_fills_load_in_record_order(self, conformance_store: BlockingPersistence) -> None:
        first = [
            make_fill("alpha", price=f"{100 + i}.10", ts=BASE_TS - timedelta(i)) for i in range(5)
        ]
        second = [make_fill("alpha", side=Side.SELL, quantity="3.5") for _ in range(3)]
        conformance_store.record_fills(first)
        conformance_store.record_fills(second)
        # Timestamps run backwards on purpose: the journal keeps record order, not time order.
        assert_exactly_equal(conformance_store.load_fills(), first + second)
        assert all(isinstance(fill, Fill) for fill in conformance_store.load_fills())

    def test_record_no_fills(self, conformance_store: BlockingPersistence) -> None:
        conformance_store.record_fills([])
        assert conformance_store.load_fills() == []

    def test_same_fill_twice_is_stored_once(self, conformance_store: BlockingPersistence) -> None:
        one, two, three = make_fill(), make_fill(), make_fill()
        conformance_store.record_fills([one, two])
        conformance_store.record_fills([two, three])
        conformance_store.record_fills([three, three, one])
        assert conformance_store.load_fills() == [one, two, three]

    def test_same_order_id_with_other_fill_id_is_ignored(
        self, conformance_store: BlockingPersistence
    ) -> None:
        original = make_fill(price="10.00")
        impostor = make_fill(order_id=original.order_id, price="99.99", quantity="1")
        assert impostor.fill_id != original.fill_id
        conformance_store.record_fills([original])
        conformance_store.record_fills([impostor])
        assert conformance_store.load_fills() == [original]
        later = make_fill()
        conformance_store.record_fills([impostor, later])
        assert conformance_store.load_fills() == [original, later]

    def test_duplicate_order_ids_within_one_batch(
        self, conformance_store: BlockingPersistence
    ) -> None:
        first = make_fill(price="1.5")
        twin = make_fill(order_id=first.order_id, price="2.5")
        conformance_store.record_fills([first, twin])
        assert conformance_store.load_fills() == [first]

    def test_load_fills_of_one_portfolio(self, conformance_store: BlockingPersistence) -> None:
        fills = [make_fill("alpha" if i % 3 else "beta", quantity=str(i + 1)) for i in range(12)]
        conformance_store.record_fills(fills)
        alpha = [fill for fill in fills if fill.strategy_id == "alpha"]
        beta = [fill for fill in fills if fill.strategy_id == "beta"]
        assert conformance_store.load_fills("alpha") == alpha
        assert conformance_store.load_fills("beta") == beta
        assert conformance_store.load_fills("gamma") == []
        assert conformance_store.load_fills() == fills

    def test_load_fills_after_gives_what_was_journaled_since(
        self, conformance_store: BlockingPersistence
    ) -> None:
        first = [make_fill("alpha" if i % 2 else "beta", quantity=str(i + 1)) for i in range(5)]
        conformance_store.record_fills(first)
        assert conformance_store.load_fills_after(0) == first
        assert conformance_store.load_fills_after(3) == first[3:]
        assert conformance_store.load_fills_after(5) == []
        assert conformance_store.load_fills_after(50) == []
        # Duplicates are not journaled, so they do not count.
        later = [make_fill("gamma"), make_fill("alpha")]
        conformance_store.record_fills([first[0], *later])
        assert conformance_store.load_fills_after(5) == later
        assert conformance_store.load_fills_after(6) == later[1:]
        assert conformance_store.load_fills() == first + later

    @pytest.mark.parametrize("count", [-1, 1.5, "2", True, None])
    def test_load_fills_after_refuses_what_is_not_a_count(
        self, conformance_store: BlockingPersistence, count: Any
    ) -> None:
        conformance_store.record_fills([make_fill()])
        with pytest.raises(ValueError, match="load_fills_after needs a count of fills"):
            conformance_store.load_fills_after(count)

    def test_fill_round_trip_is_exact(self, conformance_store: BlockingPersistence) -> None:
        fills = [
            make_fill(quantity="0.000100", price="100.10", commission="0.00"),
            make_fill(quantity="1E+3", price="12345678901234567890.123456789012345678"),
            make_fill(side=Side.SELL, quantity="7", price="0.05", commission="0"),
            make_fill(ts=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ]
        conformance_store.record_fills(fills)
        loaded = conformance_store.load_fills()
        assert_exactly_equal(loaded, fills)
        assert str(loaded[0].price) == "100.10"
        assert str(loaded[0].quantity) == "0.000100"
        assert str(loaded[1].quantity) == "1E+3"
        assert all(isinstance(fill.order_id, UUID) for fill in loaded)
        assert all(fill.ts.utcoffset() == timedelta(0) for fill in loaded)

    def test_awkward_portfolio_ids(self, conformance_store: BlockingPersistence) -> None:
        ids = ["a'; DROP TABLE fills; --", 'quote"s', "ünïcødé β", "with space", "%_wild*"]
        fills = [make_fill(pid) for pid in ids]
        conformance_store.record_fills(fills)
        conformance_store.save_snapshots([make_snapshot(pid) for pid in ids])
        for pid, fill in zip(ids, fills, strict=True):
            assert conformance_store.load_fills(pid) == [fill]
        assert sorted(conformance_store.load_snapshots()) == sorted(ids)
        assert conformance_store.load_fills("%") == []

    # ---- snapshots ---------------------------------------------------------------------------

    def test_snapshot_round_trip_is_exact(self, conformance_store: BlockingPersistence) -> None:
        last_fill = uuid7()
        snapshot = make_snapshot(
            "alpha",
            cash="100.10",
            equity="1E+3",
            commission_paid="0.0500",
            fills_applied=42,
            last_fill_id=last_fill,
            positions={
                "INFY": {"quantity": "10.000", "average_price": "1502.35", "realized_pnl": "-3.30"},
                "TCS": {"quantity": "-0.5", "average_price": "0.000001", "last_price": "3.10"},
                "ZERO": {"quantity": "0E-8", "average_price": "0", "realized_pnl": "12.00"},
            },
            ts=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        )
        conformance_store.save_snapshots([snapshot])
        loaded = conformance_store.load_snapshots()
        assert list(loaded) == ["alpha"]
        got = loaded["alpha"]
        assert isinstance(got, PortfolioSnapshot)
        assert_exactly_equal(got, snapshot)
        assert str(got.cash) == "100.10"
        assert str(got.equity) == "1E+3"
        assert str(got.positions["INFY"].quantity) == "10.000"
        assert str(got.positions["ZERO"].quantity) == "0E-8"
        assert got.last_fill_id == last_fill
        assert got.event_id == snapshot.event_id
        assert got.ts.utcoffset() == timedelta(0)

    def test_snapshot_without_optional_fields(self, conformance_store: BlockingPersistence) -> None:
        bare = make_snapshot("bare", cash="0", equity="0")
        conformance_store.save_snapshots([bare])
        assert_exactly_equal(conformance_store.load_snapshots(), {"bare": bare})

    def test_latest_snapshot_per_portfolio(self, conformance_store: BlockingPersistence) -> None:
        old_a, b = make_snapshot("a", cash="1.0"), make_snapshot("b", cash="2.0")
        conformance_store.save_snapshots([old_a, b])
        new_a = make_snapshot("a", cash="1.10", fills_applied=1)
        conformance_store.save_snapshots([new_a])
        assert conformance_store.load_snapshots() == {"a": new_a, "b": b}
        # Within one batch the later snapshot of a portfolio wins.
        mid_b, last_b = make_snapshot("b", cash="3"), make_snapshot("b", cash="4")
        conformance_store.save_snapshots([mid_b, last_b])
        assert conformance_store.load_snapshots() == {"a": new_a, "b": last_b}

    def test_save_no_snapshots(self, conformance_store: BlockingPersistence) -> None:
        conformance_store.save_snapshots([])
        assert conformance_store.load_snapshots() == {}

    def test_thousand_portfolios_then_three_updated(
        self, conformance_store: BlockingPersistence
    ) -> None:
        originals = {
            f"p{i:04d}": make_snapshot(f"p{i:04d}", cash=f"{i}.{i % 100:02d}") for i in range(1000)
        }
        conformance_store.save_snapshots(list(originals.values()))
        updated = {
            pid: make_snapshot(pid, cash="0.01", fills_applied=7, last_fill_id=uuid7())
            for pid in ("p0000", "p0500", "p0999")
        }
        conformance_store.save_snapshots(list(updated.values()))
        loaded = conformance_store.load_snapshots()
        assert len(loaded) == 1000
        assert_exactly_equal(loaded, {**originals, **updated})

    def test_save_snapshots_is_atomic(self, conformance_store: BlockingPersistence) -> None:
        kept = make_snapshot("a", cash="1")
        conformance_store.save_snapshots([kept])
        # A snapshot that cannot be serialized (model_construct skips validation) in the middle
        # of a batch: the whole batch must fail and leave the stored state as it was.
        broken = PortfolioSnapshot.model_construct(
            **{**make_snapshot("broken").__dict__, "cash": object()}
        )
        batch = [make_snapshot("a", cash="2"), broken, make_snapshot("c", cash="3")]
        with pytest.raises(Exception):  # noqa: B017 - which error is the back end's choice
            conformance_store.save_snapshots(batch)
        assert conformance_store.load_snapshots() == {"a": kept}
        # ... and the back end still works afterwards.
        newer = make_snapshot("a", cash="5")
        conformance_store.save_snapshots([newer])
        assert conformance_store.load_snapshots() == {"a": newer}

    # ---- durability --------------------------------------------------------------------------

    def test_reopen_keeps_everything(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        fills = [make_fill("alpha"), make_fill("beta", price="0.10"), make_fill("alpha")]
        snapshots = [make_snapshot("alpha", cash="10.10"), make_snapshot("beta", cash="20.20")]
        conformance_store.record_fills(fills)
        conformance_store.save_snapshots(snapshots)
        again = self.restart(conformance_store, conformance_runner)
        assert_exactly_equal(again.load_fills(), fills)
        assert again.load_fills("beta") == [fills[1]]
        assert_exactly_equal(again.load_snapshots(), {s.portfolio_id: s for s in snapshots})
        # Idempotency survives a restart: the journal still knows the stored order ids.
        extra = make_fill("beta")
        again.record_fills([fills[0], extra])
        assert again.load_fills() == [*fills, extra]
        newer = make_snapshot("alpha", cash="11")
        again.save_snapshots([newer])
        assert again.load_snapshots() == {"alpha": newer, "beta": snapshots[1]}

    # ---- corrupt data ------------------------------------------------------------------------

    def test_corrupt_snapshot_raises(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        conformance_store.save_snapshots(
            [make_snapshot("healthy"), make_snapshot(VICTIM, cash="9.90")]
        )
        self._assert_damage_is_refused(
            conformance_store, conformance_runner, self.corrupt_a_snapshot, "load_snapshots"
        )

    def test_corrupt_fill_raises(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        conformance_store.record_fills([make_fill("healthy"), make_fill(VICTIM, price="9.90")])
        self._assert_damage_is_refused(
            conformance_store, conformance_runner, self.corrupt_a_fill, "load_fills"
        )

    def _assert_damage_is_refused(
        self,
        store: BlockingPersistence,
        runner: AwaitRunner,
        damage: Any,
        load: str,
    ) -> None:
        """``damage`` (:meth:`corrupt_a_snapshot` or :meth:`corrupt_a_fill`) of the victim's
        stored event makes ``load`` raise CorruptStateError naming what it returned (or the
        victim). Never a silent reset: a restarted instance refuses it too (at open or at
        load)."""
        if not self.supports_corruption_test:
            pytest.skip(f"{type(self).__name__} sets supports_corruption_test = False")
        expected = runner.resolve(damage(store.persistence, VICTIM))
        needle = expected if expected is not None else VICTIM
        with pytest.raises(CorruptStateError) as info:
            getattr(store, load)()
        assert needle in str(info.value), (
            f"CorruptStateError should name {needle!r}; got: {info.value}"
        )
        store.close()
        fresh = runner.wrap(self.reopen(store.persistence))
        with pytest.raises(CorruptStateError):
            fresh.open()
            getattr(fresh, load)()

    # ---- metadata (optional) ------------------------------------------------------------------

    def test_metadata_keeps_the_latest_value_of_each_key(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        assert conformance_store.load_metadata() == {}
        conformance_store.save_metadata({"alpha": "1", "beta": '{"salt": "x"}'})
        conformance_store.save_metadata({"alpha": "2", "δ'; DROP TABLE x; --": "ünïcode\n" * 500})
        conformance_store.save_metadata({})
        expected = {
            "alpha": "2",
            "beta": '{"salt": "x"}',
            "δ'; DROP TABLE x; --": "ünïcode\n" * 500,
        }
        assert conformance_store.load_metadata() == expected
        # Metadata is no state: a store holding only metadata still loads as empty.
        assert conformance_store.load_snapshots() == {} and conformance_store.load_fills() == []
        again = self.restart(conformance_store, conformance_runner)
        assert again.load_metadata() == expected
        again.close()

    def test_metadata_that_is_not_text_is_refused(
        self, conformance_store: BlockingPersistence
    ) -> None:
        conformance_store.save_metadata({"kept": "yes"})
        for bad in (
            {"n": 1},
            {"": "empty key"},
            {1: "int key"},
            {"n": None},
            {"kept": "changed", "also": "new", "bad": 2},  # all or nothing
        ):
            with pytest.raises(ValueError):
                conformance_store.save_metadata(bad)  # type: ignore[arg-type]
        assert conformance_store.load_metadata() == {"kept": "yes"}

    # ---- rejections (optional) ----------------------------------------------------------------

    def test_rejections_are_journaled_once_per_signal_in_order(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        assert conformance_store.load_rejections() == []
        first = make_rejection("alpha", validator="paper")
        second = make_rejection("beta", validator="max_position", reason="ünïcode '; --\n" * 50)
        third = make_rejection("alpha", validator="cancel", reason="", limit_price=None)
        conformance_store.record_rejections([first, second])
        conformance_store.record_rejections([])
        # The same signal refused again (a second answer after a restart): the first stays.
        again = make_rejection("alpha", validator="other", signal_id=first.signal.event_id)
        conformance_store.record_rejections([again, third, third])
        expected = [first, second, third]
        assert_exactly_equal(conformance_store.load_rejections(), expected)
        assert_exactly_equal(conformance_store.load_rejections(2), [third])
        assert conformance_store.load_rejections(3) == []
        assert conformance_store.load_rejections(10) == []
        # Rejections are no state: a store holding only rejections still loads as empty.
        assert conformance_store.load_snapshots() == {} and conformance_store.load_fills() == []
        fresh = self.restart(conformance_store, conformance_runner)
        assert_exactly_equal(fresh.load_rejections(), expected)
        fresh.close()

    def test_count_rejections_counts_the_journal(
        self, conformance_store: BlockingPersistence, conformance_runner: AwaitRunner
    ) -> None:
        assert conformance_store.count_rejections() == 0
        first = make_rejection("alpha")
        conformance_store.record_rejections([first, make_rejection("beta")])
        again = make_rejection("alpha", validator="other", signal_id=first.signal.event_id)
        conformance_store.record_rejections([again, make_rejection("alpha")])
        assert conformance_store.count_rejections() == 3 == len(conformance_store.load_rejections())
        fresh = self.restart(conformance_store, conformance_runner)
        assert fresh.count_rejections() == 3
        fresh.close()

    def test_load_rejections_refuses_a_count_that_is_not_one(
        self, conformance_store: BlockingPersistence
    ) -> None:
        conformance_store.record_rejections([make_rejection()])
        for bad in (-1, 1.0, "1", True, None):
            with pytest.raises(ValueError, match="load_rejections needs a count of rejections"):
                conformance_store.load_rejections(bad)

    # ---- state written by a newer tradeloom --------------------------------------------------

    def test_fill_of_a_newer_schema_version_is_refused(
        self, conformance_store: BlockingPersistence
    ) -> None:
        conformance_store.record_fills([make_fill("alpha"), _newer(make_fill("alpha"))])
        _assert_refused_as_newer(conformance_store.load_fills)
        _assert_refused_as_newer(lambda: conformance_store.load_fills("alpha"))

    def test_snapshot_of_a_newer_schema_version_is_refused(
        self, conformance_store: BlockingPersistence
    ) -> None:
        conformance_store.save_snapshots([make_snapshot("alpha"), _newer(make_snapshot("beta"))])
        _assert_refused_as_newer(conformance_store.load_snapshots)


_Stored = TypeVar("_Stored", bound=Event)


def _newer(event: _Stored) -> _Stored:
    """``event`` as a newer tradeloom would write it: ``schema_version`` above this one's."""
    return event.model_copy(update={"schema_version": SCHEMA_VERSION + 1})


def _assert_refused_as_newer(load: Any) -> None:
    """Stored state of a newer schema version is refused with a PersistenceError that says
    so, not read as if it were of this version, nor reported as damaged (CorruptStateError)."""
    with pytest.raises(PersistenceError) as info:
        load()
    assert not isinstance(info.value, CorruptStateError), (
        f"state of a newer schema version is not damaged; got CorruptStateError: {info.value}"
    )
    assert "newer" in str(info.value), (
        f"the PersistenceError should say the state is of a newer version; got: {info.value}"
    )
