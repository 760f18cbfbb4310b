"""In-memory persistence: the Persistence contract without a disk, for tests and benchmarks.

Events are kept as their JSON encoding (``model_dump_json``), exactly as a durable back end
stores them, so what a memory-backed run loads has made the same round trip (journaled fills
are encoded when the journal is read: see :class:`MemoryStore`). Nothing survives the
process; share one :class:`MemoryStore` between instances to simulate a restart within a
process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import attrs

from tradeloom.components import Persistence
from tradeloom.errors import PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot, Rejection
from tradeloom.storage import (
    check_metadata,
    decode_stored_fill,
    decode_stored_rejection,
    decode_stored_snapshot,
    journal_count,
)

UNENCODED_FILLS_MAX = 65_536
"""Journaled fills a :class:`MemoryStore` keeps as objects before it encodes them all."""


@attrs.define(eq=False)
class MemoryStore:
    """The storage behind :class:`MemoryPersistence`: a fills journal and the latest snapshot
    JSON of each portfolio. Thread-safe through ``lock``.

    Fills are encoded to JSON when the journal is read (:attr:`fills`), or once more than
    :data:`UNENCODED_FILLS_MAX` wait: a backtest keeps its fills in its result anyway, so
    keeping them here too costs little and saves encoding each one (about 5% of a backtest
    that trades often); a long live run's journal still becomes JSON text, which takes a fifth
    of the memory of the objects and nothing of the garbage collector's time. A fill that
    cannot be encoded (one made with ``model_construct`` from bad values) is therefore reported
    when the journal is read, not when it is recorded.
    """

    snapshots: dict[str, str] = attrs.field(factory=dict)
    """``portfolio_id -> snapshot JSON``, the latest saved."""
    metadata: dict[str, str] = attrs.field(factory=dict)
    """What :meth:`MemoryPersistence.save_metadata` saved, the latest value of each key."""
    rejections: list[str] = attrs.field(factory=list)
    """The rejections journal: each rejection's JSON, in the order recorded (one a signal)."""
    rejected_signals: set[int] = attrs.field(factory=set, repr=False)
    """The signal ids (as ints) of :attr:`rejections`."""
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)
    # The journal: fills encoded so far, then fills recorded since, not encoded yet.
    _encoded: list[tuple[str, str]] = attrs.field(factory=list, init=False, repr=False)
    _recorded: list[Fill] = attrs.field(factory=list, init=False, repr=False)
    # Order ids journaled, as ints (hashing a UUID runs Python code).
    _order_ids: set[int] = attrs.field(factory=set, init=False, repr=False)

    @property
    def fills(self) -> list[tuple[str, str]]:
        """The journal: ``(portfolio_id, fill JSON)`` in the order recorded. The list itself,
        so that a test may change an entry; fills recorded later join it when it is read
        again."""
        with self.lock:
            self._encode_recorded()
            return self._encoded

    def journal(self, fills: Sequence[Fill]) -> int:
        """Add the fills whose orders are not journaled yet; return how many were added."""
        keyed = [(fill.order_id.int, fill) for fill in fills]  # all or nothing: read them first
        with self.lock:
            order_ids, recorded = self._order_ids, self._recorded
            before = len(recorded)
            for order_id, fill in keyed:
                if order_id not in order_ids:
                    order_ids.add(order_id)
                    recorded.append(fill)
            added = len(recorded) - before
            if len(recorded) > UNENCODED_FILLS_MAX:
                self._encode_recorded()
            return added

    def fill_count(self) -> int:
        with self.lock:
            return len(self._encoded) + len(self._recorded)

    def _encode_recorded(self) -> None:
        # All or nothing, so that a failure (or an interruption) leaves the journal as it was.
        encoded = []
        for fill in self._recorded:
            try:
                # The model's serializer, as model_dump_json() calls it, without its wrapper.
                data = fill.__pydantic_serializer__.to_json(fill).decode()
            except Exception as exc:
                position = len(self._encoded) + len(encoded) + 1
                raise PersistenceError(
                    f"memory store: fill #{position} (order {fill.order_id}, portfolio "
                    f"{fill.strategy_id!r}) cannot be encoded: {exc}"
                ) from exc
            encoded.append((fill.strategy_id, data))
        self._encoded.extend(encoded)
        self._recorded.clear()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryStore):
            return NotImplemented
        return self.fills == other.fills and self.snapshots == other.snapshots

    __hash__ = None  # type: ignore[assignment]  # mutable


class MemoryPersistence(Persistence):
    """Keeps fills and snapshots in process memory. Methods are synchronous and thread-safe.

    ``store``: the :class:`MemoryStore` to use; a private one when omitted.
    """

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self._open = False

    def __repr__(self) -> str:
        return (
            f"MemoryPersistence(fills={self.store.fill_count()}, "
            f"snapshots={len(self.store.snapshots)})"
        )

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise PersistenceError("memory persistence is not open; call open() first")

    def record_fills(self, fills: Sequence[Fill]) -> None:
        self._check_open()
        self.store.journal(fills)

    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        self._check_open()
        # Encode the whole batch before touching the store: all or nothing.
        encoded = {snapshot.portfolio_id: snapshot.model_dump_json() for snapshot in snapshots}
        with self.store.lock:
            self.store.snapshots.update(encoded)

    def load_snapshots(self) -> dict[str, PortfolioSnapshot]:
        self._check_open()
        with self.store.lock:
            stored = dict(self.store.snapshots)
        loaded: dict[str, PortfolioSnapshot] = {}
        for portfolio_id, data in stored.items():
            loaded[portfolio_id] = decode_stored_snapshot(
                data, where=f"memory store: portfolio {portfolio_id!r}", portfolio_id=portfolio_id
            )
        return loaded

    def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        return self._load_fills(portfolio_id, 0)

    def load_fills_after(self, count: int) -> list[Fill]:
        """The journaled fills after the first ``count``, in the order recorded."""
        return self._load_fills(None, journal_count(count))

    def _load_fills(self, portfolio_id: str | None, start: int) -> list[Fill]:
        self._check_open()
        stored = list(self.store.fills)
        fills: list[Fill] = []
        for position in range(start, len(stored)):
            owner, data = stored[position]
            if portfolio_id is not None and owner != portfolio_id:
                continue
            where = f"memory store: fill #{position + 1}, portfolio {owner!r}"
            fills.append(decode_stored_fill(data, where=where, portfolio_id=owner))
        return fills

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Journal ``rejections``, ignoring one whose signal has a journaled rejection already
        (see :class:`~tradeloom.components.Persistence`)."""
        self._check_open()
        encoded = [(r.signal.event_id.int, r.model_dump_json()) for r in rejections]
        store = self.store
        with store.lock:
            for signal_id, data in encoded:
                if signal_id not in store.rejected_signals:
                    store.rejected_signals.add(signal_id)
                    store.rejections.append(data)

    def load_rejections(self, after: int = 0) -> list[Rejection]:
        """The journaled rejections after the first ``after``, in the order recorded."""
        start = journal_count(after, "load_rejections", "rejections")
        self._check_open()
        with self.store.lock:
            stored = self.store.rejections[start:]
        return [
            decode_stored_rejection(data, where=f"memory store: rejection #{start + number}")
            for number, data in enumerate(stored, 1)
        ]

    def count_rejections(self) -> int:
        """How many rejections the journal holds."""
        self._check_open()
        with self.store.lock:
            return len(self.store.rejections)

    def save_metadata(self, items: Mapping[str, str]) -> None:
        """Keep each key's latest value (see :class:`~tradeloom.components.Persistence`)."""
        self._check_open()
        checked = check_metadata(items)
        with self.store.lock:
            self.store.metadata.update(checked)

    def load_metadata(self) -> dict[str, str]:
        self._check_open()
        with self.store.lock:
            return dict(self.store.metadata)
