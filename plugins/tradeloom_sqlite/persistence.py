"""SQLite persistence: the fills journal and the latest snapshot of each portfolio in one file.

Events are stored as their pydantic JSON (``model_dump_json``), in which Decimals are strings,
so every amount reads back with its exact digits and exponent. A few columns beside the JSON
(order id, portfolio id, ...) exist for the unique constraint, filtering and ad-hoc SQL.

Durability: by default the database runs in WAL mode with ``synchronous=NORMAL``. A committed
transaction survives a crash of the process; after a power loss or OS crash the last few
transactions may be rolled back, but the file is never corrupted by it. Set
``synchronous="full"`` to make every commit durable against power loss too, at the cost of an
fsync per commit.

Stored data that cannot be read back raises :class:`~tradeloom.errors.CorruptStateError`
naming the file (and the table and portfolio when a single row is damaged). The file is never
replaced or emptied to make an error go away.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from tradeloom.components import Persistence
from tradeloom.errors import ConfigError, CorruptStateError, PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot
from tradeloom.storage import (
    decode_stored_fill,
    decode_stored_snapshot,
)

JournalMode = Literal["wal", "delete", "truncate", "persist"]
Synchronous = Literal["normal", "full", "extra"]

APPLICATION_ID = 0x544C4F4D
"""``PRAGMA application_id`` of a tradeloom database ("TLOM")."""

# Schema migrations: version -> statements. ``PRAGMA user_version`` holds the version applied.
# Append new versions; never edit a released one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE fills (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            order_id TEXT NOT NULL UNIQUE,
            fill_id TEXT NOT NULL,
            portfolio_id TEXT NOT NULL,
            instrument TEXT NOT NULL,
            ts TEXT NOT NULL,
            event TEXT NOT NULL
        )
        """,
        "CREATE INDEX fills_by_portfolio ON fills (portfolio_id, seq)",
        """
        CREATE TABLE snapshots (
            portfolio_id TEXT PRIMARY KEY NOT NULL,
            saved_seq INTEGER NOT NULL,
            saved_at TEXT NOT NULL,
            snapshot TEXT NOT NULL
        )
        """,
        "CREATE INDEX snapshots_by_save ON snapshots (saved_seq)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

# Primary SQLite result codes that mean "the file's content is damaged".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class SqlitePersistence(Persistence):
    """Fills journal and portfolio snapshots in a SQLite file (standard library ``sqlite3``).

    Parameters (``[persistence.params]``):

    - ``path``: the database file, created with its parent folders when missing.
    - ``journal_mode``: ``"wal"`` (default: readers never block the writer), ``"delete"``,
      ``"truncate"`` or ``"persist"``.
    - ``synchronous``: ``"normal"`` (default; safe against corruption, may lose the last
      commits on power loss in WAL mode), ``"full"`` or ``"extra"``.
    - ``busy_timeout_seconds``: how long to wait for another process's write lock.

    Methods are synchronous and thread-safe: one connection (``check_same_thread=False``)
    guarded by a lock, so the runtime may call them from worker threads. Several processes may
    share one file; SQLite's file locks serialize their writes.

    ``snapshots`` keeps only the latest snapshot of each portfolio (with the number of the save
    that wrote it); the fills journal is the history.
    """

    def __init__(
        self,
        path: str | Path = "tradeloom.sqlite",
        *,
        journal_mode: JournalMode = "wal",
        synchronous: Synchronous = "normal",
        busy_timeout_seconds: float = 5.0,
    ) -> None:
        journal_mode = str(journal_mode).lower()  # type: ignore[assignment]
        synchronous = str(synchronous).lower()  # type: ignore[assignment]
        if journal_mode not in get_args(JournalMode):
            raise ConfigError(
                f"sqlite persistence: journal_mode {journal_mode!r} is not one of "
                f"{', '.join(get_args(JournalMode))}"
            )
        if synchronous not in get_args(Synchronous):
            raise ConfigError(
                f"sqlite persistence: synchronous {synchronous!r} is not one of "
                f"{', '.join(get_args(Synchronous))}"
            )
        if not busy_timeout_seconds >= 0:
            raise ConfigError(
                f"sqlite persistence: busy_timeout_seconds must be >= 0, got {busy_timeout_seconds}"
            )
        self.path = Path(path)
        self.journal_mode: JournalMode = journal_mode
        self.synchronous: Synchronous = synchronous
        self.busy_timeout_seconds = float(busy_timeout_seconds)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqlitePersistence(path={str(self.path)!r})"

    # ---- errors ------------------------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error, action: str) -> PersistenceError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return CorruptStateError(
                f"{self.path}: {exc} (while {action}); the file was left as it is: restore it "
                "from a backup, or move it away to start with empty state"
            )
        return PersistenceError(f"{self.path}: {action} failed: {exc}")

    @contextmanager
    def _connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """The open connection, under the lock, with sqlite errors translated."""
        with self._lock:
            if self._conn is None:
                raise PersistenceError(f"{self.path}: sqlite persistence is not open; call open()")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._translate(exc, action) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block succeeds, rolled back otherwise."""
        with self._connection(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    # ---- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open the file, check it is a tradeloom database and create or migrate the schema."""
        with self._lock:
            if self._conn is not None:
                return
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_seconds,
                    isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
                    check_same_thread=False,  # used from worker threads, guarded by _lock
                )
            except sqlite3.Error as exc:
                raise self._translate(exc, "opening the database") from exc
            try:
                self._prepare(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise self._translate(exc, "opening the database") from exc
            except BaseException:
                conn.close()
                raise
            self._conn = conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Reading the header first: a garbage or truncated file fails here, before anything
        # could be written into it.
        self._check_version(conn)
        mode = conn.execute(f"PRAGMA journal_mode = {self.journal_mode}").fetchone()[0]
        if str(mode).lower() != self.journal_mode and str(self.path) != ":memory:":
            raise PersistenceError(
                f"{self.path}: could not switch to journal_mode {self.journal_mode} (still {mode})"
            )
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked again under the write lock: another process may have migrated meanwhile.
            version = self._check_version(conn)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    def _check_version(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        if application_id not in (0, APPLICATION_ID):
            raise PersistenceError(
                f"{self.path}: not a tradeloom database (application_id {application_id:#x}); "
                "refusing to use it"
            )
        if version > SCHEMA_VERSION:
            raise PersistenceError(
                f"{self.path}: database schema version {version} is newer than this tradeloom "
                f"sqlite persistence supports ({SCHEMA_VERSION}); upgrade tradeloom to use it"
            )
        if version == 0:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            if tables:
                raise PersistenceError(
                    f"{self.path}: a SQLite database with tables of its own "
                    f"({', '.join(tables)}) but no tradeloom schema; refusing to write into it"
                )
        return version

    def close(self) -> None:
        """Close the connection (in WAL mode this also checkpoints the write-ahead log)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    raise self._translate(exc, "closing the database") from exc

    # ---- fills -------------------------------------------------------------------------------

    def record_fills(self, fills: Sequence[Fill]) -> None:
        """Append fills in order; a fill whose ``order_id`` is stored already is ignored."""
        rows = [
            (
                str(fill.order_id),
                str(fill.fill_id),
                fill.strategy_id,
                fill.instrument,
                fill.ts.isoformat(),
                fill.model_dump_json(),
            )
            for fill in fills
        ]
        if not rows:
            return
        with self._transaction("recording fills") as conn:
            conn.executemany(
                "INSERT INTO fills (order_id, fill_id, portfolio_id, instrument, ts, event) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
                rows,
            )

    def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        """The journaled fills (of one portfolio, or all) in the order recorded."""
        with self._connection("loading fills") as conn:
            if portfolio_id is None:
                rows = conn.execute(
                    "SELECT seq, portfolio_id, event FROM fills ORDER BY seq"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT seq, portfolio_id, event FROM fills WHERE portfolio_id = ? "
                    "ORDER BY seq",
                    (portfolio_id,),
                ).fetchall()
        return [self._decode_fill(seq, owner, data) for seq, owner, data in rows]

    def _decode_fill(self, seq: int, portfolio_id: Any, data: Any) -> Fill:
        where = f"{self.path}: table fills, row seq={seq}, portfolio {portfolio_id!r}"
        return decode_stored_fill(data, where=where, portfolio_id=portfolio_id)

    # ---- snapshots ---------------------------------------------------------------------------

    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        """Store snapshots in one transaction: all of them, or none when anything fails."""
        # Serialize the whole batch before the transaction starts.
        rows = [(snapshot.portfolio_id, snapshot.model_dump_json()) for snapshot in snapshots]
        if not rows:
            return
        saved_at = datetime.now(UTC).isoformat()
        with self._transaction("saving snapshots") as conn:
            saved_seq = conn.execute(
                "SELECT COALESCE(MAX(saved_seq), 0) + 1 FROM snapshots"
            ).fetchone()[0]
            conn.executemany(
                "INSERT INTO snapshots (portfolio_id, saved_seq, saved_at, snapshot) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (portfolio_id) DO UPDATE SET "
                "saved_seq = excluded.saved_seq, saved_at = excluded.saved_at, "
                "snapshot = excluded.snapshot",
                [(portfolio_id, saved_seq, saved_at, data) for portfolio_id, data in rows],
            )

    def load_snapshots(self) -> dict[str, PortfolioSnapshot]:
        """The latest snapshot of every portfolio, by portfolio id."""
        with self._connection("loading snapshots") as conn:
            rows = conn.execute(
                "SELECT portfolio_id, snapshot FROM snapshots ORDER BY portfolio_id"
            ).fetchall()
        loaded: dict[str, PortfolioSnapshot] = {}
        for portfolio_id, data in rows:
            where = f"{self.path}: table snapshots, portfolio {portfolio_id!r}"
            loaded[portfolio_id] = decode_stored_snapshot(
                data, where=where, portfolio_id=portfolio_id
            )
        return loaded
