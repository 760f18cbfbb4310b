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

One writer per file: the first write (or :meth:`SqlitePersistence.claim_for_writing`) takes an
exclusive ``flock`` on the sidecar file ``<path>.lock``, held until :meth:`close` or the death
of the process, and checks that nobody wrote to the file since this instance opened it. Two runs
on one file (two backtests started together, a second live run) would otherwise both start from
the same state and journal their fills on top of each other. Readers (the strategy and risk
processes of a split deployment) take no hold.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no writer hold, see SqlitePersistence
    fcntl = None  # type: ignore[assignment]

from tradeloom.components import Persistence
from tradeloom.errors import ConfigError, CorruptStateError, PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot, Rejection
from tradeloom.storage import (
    check_metadata,
    decode_stored_fill,
    decode_stored_rejection,
    decode_stored_snapshot,
    journal_count,
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
_METADATA_TABLE = "tradeloom_metadata"
"""Made by the first save_metadata, under the writer hold, not by a migration: a file without
it is read as before (by readers that may not write, by an older tradeloom that ignores it),
with no metadata."""
_REJECTIONS_TABLE = "tradeloom_rejections"
"""Made by the first record_rejections, as the metadata table is (see there)."""
_LAZY_TABLES = {_METADATA_TABLE, _REJECTIONS_TABLE}
_TABLES = {1: {"fills", "snapshots"}}
"""The tables of each schema version (``sqlite_*`` tables aside)."""

# The longest wait SQLite can be given: its busy timeout is an int of milliseconds (a longer
# one overflows in the sqlite3 module and becomes no wait at all).
LONGEST_BUSY_TIMEOUT_SECONDS = (2**31 - 1) // 1000

_SQLITE_BUSY = 5
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
    - ``busy_timeout_seconds``: how long to wait for another process's write lock (at most
      about 24.8 days, the longest SQLite takes: a longer one, ``inf`` too, waits that long).

    Methods are synchronous and thread-safe: one connection (``check_same_thread=False``)
    guarded by a lock, so the runtime may call them from worker threads.

    Several processes may read one file, but only one may write to it: the first write (or
    :meth:`claim_for_writing`) takes the writer hold, an exclusive ``flock`` on ``<path>.lock``
    kept until :meth:`close` (the kernel drops it when the process dies, ``kill -9`` too), and
    refuses with :class:`~tradeloom.errors.PersistenceError` when another process holds it or
    has written to the file since this instance opened it. Without ``fcntl`` (Windows) there is
    no hold, only the check for writes since open.

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
        if not str(path).strip():
            raise ConfigError("sqlite persistence: path must name a file, got an empty path")
        # "~/state.sqlite" is the user's home, as for the replay feed's files.
        self.path = Path(path) if str(path) == ":memory:" else Path(path).expanduser()
        self.journal_mode: JournalMode = journal_mode
        self.synchronous: Synchronous = synchronous
        self.busy_timeout_seconds = min(float(busy_timeout_seconds), LONGEST_BUSY_TIMEOUT_SECONDS)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._real_path: str | None = None  # the file itself, found at open()
        # The writer hold: None until claimed; -1 when held without a lock file (":memory:",
        # no fcntl); else the descriptor of the flocked ``<path>.lock``.
        self._hold: int | None = None
        self._opened_state: tuple[int, int] = (0, 0)
        self._refused: PersistenceError | None = None

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
        """A write transaction, under the writer hold: committed when the block succeeds,
        rolled back otherwise."""
        with self._connection(action) as conn:
            if self._hold is None:
                self._claim(conn)
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
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise PersistenceError(
                        f"{self.path}: cannot create the folder of the state file: "
                        f"{exc.strerror or exc}"
                    ) from exc
                # The file a link points to now, also if the link moves on before the hold.
                self._real_path = os.path.realpath(self.path)
                self._check_place(self._real_path)
                self._mend_sidecar_modes(self._real_path)
            try:
                conn = sqlite3.connect(
                    self._real_path or self.path,
                    timeout=self.busy_timeout_seconds,
                    isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
                    check_same_thread=False,  # used from worker threads, guarded by _lock
                )
            except sqlite3.Error as exc:
                raise self._opening_failed(exc) from exc
            try:
                self._prepare(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise self._opening_failed(exc) from exc
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._refused = None
            try:
                self._opened_state = self._state_marker(conn)
            except sqlite3.Error as exc:
                self._conn = None
                conn.close()
                raise self._translate(exc, "opening the database") from exc

    def _check_place(self, real_path: str) -> None:
        """Say plainly what SQLite would report as "unable to open database file": a folder
        where the file should be, or a new file in a folder this process cannot write."""
        if os.path.isdir(real_path):
            raise PersistenceError(f"{self.path}: is a folder; path must name the state file")
        if not os.path.exists(real_path) and not _writable_folder(real_path):
            raise PersistenceError(
                f"{self.path}: the state file cannot be created: the folder "
                f"{os.path.dirname(real_path) or '.'} cannot be written by this user"
            )

    def _opening_failed(self, exc: sqlite3.Error) -> PersistenceError:
        translated = self._translate(exc, "opening the database")
        if (
            self._real_path is not None
            and type(translated) is PersistenceError
            and not _writable_folder(self._real_path)
        ):
            # SQLite writes its journal next to the file: a writable file in a folder this
            # process cannot write fails with "attempt to write a readonly database".
            translated = PersistenceError(
                f"{translated}: the folder {os.path.dirname(self._real_path) or '.'} cannot be "
                "written by this user, and SQLite keeps its journal (a -wal or -journal file) "
                "next to the state file"
            )
        return translated

    def _mend_sidecar_modes(self, real_path: str) -> None:
        """Give ``-wal`` and ``-shm`` files this process owns the database file's mode.

        SQLite creates them with the file's mode, and only a connection that can write removes
        them at close: a run that opened the file while it was read-only leaves read-only ones,
        which would make every later run fail with "attempt to write a readonly database" once
        the file is writable again.
        """
        if not hasattr(os, "geteuid"):
            return  # not POSIX: no file modes to mend
        try:
            database = os.stat(real_path)
        except OSError:
            return  # a new file: SQLite creates everything itself
        if not os.access(real_path, os.W_OK):
            return  # nothing this process could write anyway
        for suffix in ("-wal", "-shm"):
            sidecar = real_path + suffix
            try:
                # Never through a link: one planted in the folder would open another file.
                fd = os.open(sidecar, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # not there, a link, or not ours to read: SQLite reports what it can't use
            try:
                found = os.fstat(fd)
                if (
                    stat.S_ISREG(found.st_mode)
                    and found.st_uid == os.geteuid()
                    and found.st_mode & 0o777 != database.st_mode & 0o777
                ):
                    os.fchmod(fd, database.st_mode & 0o777)
            except OSError:
                pass  # not ours to change
            finally:
                os.close(fd)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Reading the header first: a garbage or truncated file fails here, before anything
        # could be written into it.
        self._check_version(conn)
        mode = self._switch_journal_mode(conn)
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

    def _switch_journal_mode(self, conn: sqlite3.Connection) -> str:
        # Switching a file into (or out of) WAL needs an exclusive lock, and SQLite fails it at
        # once, without the busy handler, while another connection writes (another process
        # creating the schema of a new file): retry it for up to busy_timeout_seconds.
        deadline = time.monotonic() + self.busy_timeout_seconds
        delay = 0.005
        while True:
            try:
                return str(conn.execute(f"PRAGMA journal_mode = {self.journal_mode}").fetchone()[0])
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                if code is None or code & 0xFF != _SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _check_version(self, conn: sqlite3.Connection) -> int:
        # One statement, so one read transaction: read separately, another process creating
        # the schema of a new file could commit between the version (0) and the table list.
        version, application_id, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT application_id FROM pragma_application_id), "
            "(SELECT group_concat(name, ', ') FROM (SELECT name FROM sqlite_master "
            "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name))"
        ).fetchone()
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
        if version == 0 and tables:
            raise PersistenceError(
                f"{self.path}: a SQLite database with tables of its own ({tables}) but no "
                "tradeloom schema; refusing to write into it"
            )
        if version < 0:
            raise PersistenceError(
                f"{self.path}: not a tradeloom database (schema version {version}); refusing "
                "to use it"
            )
        if version > 0 and application_id == APPLICATION_ID:
            missing = _TABLES.get(int(version), set()) - set(tables.split(", ") if tables else ())
            if missing:
                raise CorruptStateError(
                    f"{self.path}: a tradeloom database (schema version {version}) without its "
                    f"table(s) {', '.join(sorted(missing))}; the file was left as it is: restore "
                    "it from a backup, or move it away to start with empty state"
                )
        if version > 0 and application_id == 0:
            # Another application's file may carry a user_version too (a tradeloom database
            # carries tradeloom's application_id as well, and may hold tables a user added).
            found = set(tables.split(", ")) if tables else set()
            if found - _LAZY_TABLES != _TABLES.get(int(version)):
                raise PersistenceError(
                    f"{self.path}: not a tradeloom database (schema version {version}, but "
                    f"tables {tables or 'none'}); refusing to write into it"
                )
        return int(version)

    # ---- the writer hold ---------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        """The sidecar file whose ``flock`` is the writer hold: ``<path>.lock``, next to the
        file itself (a symbolic link to it is followed, so two names of one file share it),
        as found when the file was opened."""
        if self._real_path is None:
            return Path(f"{self.path}.lock")
        return Path(f"{self._real_path}.lock")

    def claim_for_writing(self) -> None:
        """Take the writer hold now rather than at the first write.

        A run that will write calls this right after :meth:`open`, before it loads the state,
        so that a second run on the same file fails at once instead of at its first write.
        Raises :class:`~tradeloom.errors.PersistenceError` when another process holds the file
        or has written to it since :meth:`open`. Idempotent while open.
        """
        with self._connection("taking the writer hold") as conn:
            if self._hold is None:
                self._claim(conn)

    @staticmethod
    def _state_marker(conn: sqlite3.Connection) -> tuple[int, int]:
        """(highest fill seq ever used, highest snapshot save number): any write raises one."""
        row = conn.execute(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'fills'), "
            "(SELECT COALESCE(MAX(saved_seq), 0) FROM snapshots)"
        ).fetchone()
        return int(row[0]), int(row[1])

    def _claim(self, conn: sqlite3.Connection) -> None:
        """Take the writer hold (called under ``_lock``). Raises when it cannot be had."""
        if self._refused is not None:
            raise self._refused
        fd = -1 if str(self.path) == ":memory:" or fcntl is None else self._lock_file()
        try:
            now = self._state_marker(conn)
            if now != self._opened_state:
                self._refused = PersistenceError(
                    f"{self.path}: another process wrote to this state file after this one "
                    f"opened it (fills journal at seq {self._opened_state[0]} then "
                    f"{now[0]}, snapshot saves {self._opened_state[1]} then {now[1]}); two "
                    "runs on one state file would corrupt it, so this one writes nothing (it "
                    "loaded its state before those writes)"
                )
                raise self._refused
            self._check_writable(conn)
            if fd >= 0:
                with suppress(OSError):  # a lock file opened to read only: no pid in it
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            if fd >= 0:
                os.close(fd)  # drops the flock
            raise
        self._hold = fd

    def _check_writable(self, conn: sqlite3.Connection) -> None:
        """A file that can be read but not written (read-only, immutable, on a read-only mount)
        opens and loads; the run must fail now, not at its first fill."""
        if str(self.path) == ":memory:":
            return
        # A write, undone: the file stays byte for byte as it was (a run refused later, at
        # loading, must leave it so).
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE main.tradeloom_writable (probe INTEGER)")
        except sqlite3.OperationalError as exc:
            raise PersistenceError(f"{self.path}: the state file cannot be written: {exc}") from exc
        finally:
            with contextlib.suppress(sqlite3.Error):  # rolled back already by SQLite, say
                conn.execute("ROLLBACK")

    def _lock_file(self) -> int:
        """The flocked descriptor of ``<path>.lock``; raises when another process holds it."""
        assert fcntl is not None
        try:
            fd = self._open_lock_file()
        except OSError as exc:
            raise PersistenceError(
                f"{self.path}: could not open the writer lock file {self.lock_path}: {exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise PersistenceError(
                    f"{self.path}: could not lock {self.lock_path}: {exc}"
                ) from exc
            text = ""
            with suppress(OSError):
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if not text.isdigit() or not _alive(int(text)):
                # A pid left by a holder that could not clear it (a lock file it could only
                # read) names nobody now.
                holder = "another tradeloom process"
            elif int(text) == os.getpid():
                holder = f"another instance in this process (pid {text})"
            else:
                holder = f"another tradeloom process (pid {text})"
            raise PersistenceError(
                f"state file {self.path} is in use by {holder}; two "
                f"runs on one state file would corrupt it (the hold is a lock on "
                f"{self.lock_path}, released when that process closes or dies)"
            ) from None
        return fd

    def _open_lock_file(self) -> int:
        """The lock file, created with the database file's permissions (as SQLite creates its
        -wal and -shm files): whoever may write the database may take the hold. One this user
        cannot write (made by another user before that rule) is opened to read: a flock works
        on it just the same, only the pid is not written."""
        # Never through a link, and never blocking on a FIFO planted in a shared folder.
        flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            mode = os.stat(self._real_path or self.path).st_mode & 0o666
        except OSError:
            mode = 0o644
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | flags, mode)
        except PermissionError:
            fd = os.open(self.lock_path, os.O_RDONLY | flags)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
        with suppress(OSError):  # the umask took bits away: as the database file has them
            found = os.fstat(fd)
            if (
                hasattr(os, "geteuid")
                and found.st_uid == os.geteuid()
                and found.st_mode & 0o777 != mode
            ):
                os.fchmod(fd, mode)
        return fd

    def _release_hold(self) -> None:
        fd, self._hold = self._hold, None
        if fd is not None and fd >= 0:
            with suppress(OSError):
                os.ftruncate(fd, 0)  # no stale pid for the next reader of the file
            os.close(fd)

    def close(self) -> None:
        """Close the connection (in WAL mode this also checkpoints the write-ahead log) and
        release the writer hold."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._release_hold()
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

    def load_fills_after(self, count: int) -> list[Fill]:
        """The journaled fills of every portfolio after the first ``count``, in the order
        recorded: what was journaled since a reader had ``count`` of them."""
        with self._connection("loading fills") as conn:
            rows = conn.execute(
                "SELECT seq, portfolio_id, event FROM fills ORDER BY seq LIMIT -1 OFFSET ?",
                (journal_count(count),),
            ).fetchall()
        return [self._decode_fill(seq, owner, data) for seq, owner, data in rows]

    def _decode_fill(self, seq: int, portfolio_id: Any, data: Any) -> Fill:
        where = f"{self.path}: table fills, row seq={seq}, portfolio {portfolio_id!r}"
        return decode_stored_fill(data, where=where, portfolio_id=portfolio_id)

    # ---- rejections --------------------------------------------------------------------------

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Append rejections in order; one whose signal has a stored rejection is ignored."""
        rows = [(str(r.signal.event_id), r.model_dump_json()) for r in rejections]
        if not rows:
            return
        with self._transaction("recording rejections") as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_REJECTIONS_TABLE} (seq INTEGER PRIMARY KEY "
                "AUTOINCREMENT, signal_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL)"
            )
            conn.executemany(
                f"INSERT INTO {_REJECTIONS_TABLE} (signal_id, event) VALUES (?, ?) "
                "ON CONFLICT (signal_id) DO NOTHING",
                rows,
            )

    def load_rejections(self, after: int = 0) -> list[Rejection]:
        """The journaled rejections after the first ``after``, in the order recorded."""
        skip = journal_count(after, "load_rejections", "rejections")
        with self._connection("loading rejections") as conn:
            if not self._has_table(conn, _REJECTIONS_TABLE):
                return []
            rows = conn.execute(
                f"SELECT seq, event FROM {_REJECTIONS_TABLE} ORDER BY seq LIMIT -1 OFFSET ?",
                (skip,),
            ).fetchall()
        return [
            decode_stored_rejection(
                data, where=f"{self.path}: table {_REJECTIONS_TABLE}, row seq={seq}"
            )
            for seq, data in rows
        ]

    def count_rejections(self) -> int:
        """How many rejections the journal holds."""
        with self._connection("counting rejections") as conn:
            if not self._has_table(conn, _REJECTIONS_TABLE):
                return 0
            (count,) = conn.execute(f"SELECT count(*) FROM {_REJECTIONS_TABLE}").fetchone()
        return int(count)

    @staticmethod
    def _has_table(conn: sqlite3.Connection, name: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

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

    def save_metadata(self, items: Mapping[str, str]) -> None:
        """Keep each key's latest value, in one transaction."""
        rows = list(check_metadata(items).items())
        if not rows:
            return
        with self._transaction("saving metadata") as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_METADATA_TABLE} "
                "(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
            )
            conn.executemany(
                f"INSERT INTO {_METADATA_TABLE} (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                rows,
            )

    def load_metadata(self) -> dict[str, str]:
        """What :meth:`save_metadata` saved: each key's latest value (none before the first)."""
        with self._connection("loading metadata") as conn:
            if not self._has_table(conn, _METADATA_TABLE):
                return {}
            rows = conn.execute(f"SELECT key, value FROM {_METADATA_TABLE} ORDER BY key").fetchall()
        return {str(key): str(value) for key, value in rows}

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


def _writable_folder(path: str) -> bool:
    """Whether this process may create files in the folder of ``path`` (POSIX; elsewhere the
    error SQLite gives is left as it is)."""
    if not hasattr(os, "geteuid"):
        return True
    return os.access(os.path.dirname(path) or ".", os.W_OK | os.X_OK)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    if pid <= 0:
        return False  # 0 and -1 would name process groups, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
