"""PostgreSQL persistence: the fills journal and the latest snapshot of each portfolio.

Every event is stored as its pydantic JSON in a ``jsonb`` column. Decimals are JSON *strings*
there, so they read back with their exact digits and exponent (``100.10`` stays ``100.10``,
``1E+3`` stays ``1E+3``); the JSON is the source of truth. The amounts are also copied into
``numeric`` columns (which keep the scale of what was written) for SQL reporting; one that
numeric cannot hold (more than 16383 digits after the point, say) is NaN there.

The schema lives in its own PostgreSQL schema (``tradeloom`` by default) and is created or
migrated on :meth:`PostgresPersistence.open`, under an advisory lock so that several processes
may open at once. Applied versions are recorded in ``<schema>.tradeloom_migrations``.

One writer per schema: the first write (or :meth:`PostgresPersistence.claim_for_writing`) takes
a session-level advisory lock on a connection of its own, held until :meth:`close` (the server
drops it when that connection ends, with the process), and checks that nobody wrote to the
schema since this instance opened it. Readers (strategy and risk processes of a split
deployment) take no hold.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import select
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, LiteralString

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool
from pydantic import ConfigDict, Field, SecretStr, ValidationError, model_validator
from tradeloom.components import Persistence
from tradeloom.errors import ConfigError, PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot, Rejection
from tradeloom.params import ParamsModel, parameters_problem
from tradeloom.storage import (
    check_metadata,
    decode_stored_fill,
    decode_stored_rejection,
    decode_stored_snapshot,
    journal_count,
)

logger = logging.getLogger(__name__)

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True)
class Migration:
    """One schema version: statements with ``{schema}`` standing for the quoted schema name."""

    version: int
    description: str
    statements: tuple[str, ...]


# Append new versions; never edit a released one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "fills journal and latest snapshot per portfolio",
        (
            """
            CREATE TABLE {schema}.fills (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                order_id uuid NOT NULL UNIQUE,
                fill_id uuid NOT NULL,
                portfolio_id text NOT NULL,
                instrument text NOT NULL,
                ts timestamptz NOT NULL,
                quantity numeric NOT NULL,
                price numeric NOT NULL,
                event jsonb NOT NULL,
                recorded_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            "CREATE INDEX fills_by_portfolio ON {schema}.fills (portfolio_id, seq)",
            """
            CREATE TABLE {schema}.snapshots (
                portfolio_id text PRIMARY KEY,
                saved_seq bigint NOT NULL,
                saved_at timestamptz NOT NULL DEFAULT now(),
                cash numeric NOT NULL,
                equity numeric NOT NULL,
                snapshot jsonb NOT NULL
            )
            """,
            "CREATE SEQUENCE {schema}.snapshot_saves",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


# What PostgreSQL's numeric holds: up to 131072 digits before the point, 16383 after.
_NUMERIC_INTEGER_DIGITS = 131_072
_NUMERIC_FRACTION_DIGITS = 16_383


_NOT_HELD = Decimal("NaN")


def _reported(value: Decimal) -> Decimal:
    """``value`` for a reporting column, or NaN (numeric has it, and the column takes it
    without a schema change that older versions would refuse) when numeric cannot hold it:
    the JSON event is what is read back, exactly, and one such value must not keep every
    later fill out of the journal."""
    if not value.is_finite():
        return _NOT_HELD
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if -exponent > _NUMERIC_FRACTION_DIGITS or len(digits) + exponent > _NUMERIC_INTEGER_DIGITS:
        return _NOT_HELD
    return value


class PostgresParams(ParamsModel):
    """Validated parameters of :class:`PostgresPersistence` (``[persistence.params]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = Field(default="tradeloom", min_length=1)
    user: str = Field(default="tradeloom", min_length=1)
    password: SecretStr | None = Field(
        default=None,
        description="Best given through TRADELOOM_PERSISTENCE__PARAMS__PASSWORD (or PGPASSWORD).",
    )
    sslmode: SslMode = "prefer"
    db_schema: str = Field(
        default="tradeloom", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=4, ge=1)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    application_name: str = "tradeloom"

    @model_validator(mode="after")
    def _pool_bounds(self) -> PostgresParams:
        if self.pool_max_size < self.pool_min_size:
            raise ValueError(
                f"pool_max_size ({self.pool_max_size}) is below pool_min_size "
                f"({self.pool_min_size})"
            )
        return self

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg.connect` (the only place the password is
        revealed)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "sslmode": self.sslmode,
            "connect_timeout": max(1, math.ceil(self.connect_timeout_seconds)),
            "application_name": self.application_name,
        }
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        return kwargs


def _lock_key(schema: str, purpose: str = "migrate") -> int:
    """A stable signed 64-bit advisory-lock key for ``purpose`` (migrate, write) on ``schema``."""
    digest = hashlib.sha256(f"tradeloom-postgres:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresPersistence(Persistence):
    """Fills journal and portfolio snapshots in PostgreSQL, through a psycopg connection pool.

    Parameters: ``host``, ``port``, ``dbname``, ``user``, ``password`` (a secret: never shown
    in reprs, logs or errors), ``sslmode``, ``schema`` (default ``"tradeloom"``),
    ``pool_min_size``, ``pool_max_size``, ``connect_timeout_seconds``, ``application_name``.

    Methods are synchronous and thread-safe (the pool hands each call its own connection), so
    the runtime may call them from worker threads.

    Several processes may read one schema, but only one may write to it: the first write (or
    :meth:`claim_for_writing`) takes the writer hold, a session advisory lock on a connection
    of its own kept until :meth:`close`, and refuses with
    :class:`~tradeloom.errors.PersistenceError` when another session holds it or has written to
    the schema since this instance opened it. A hold lost with its connection (server restart)
    is taken again at the next write when nobody else wrote meanwhile.
    """

    def __init__(self, **params: Any) -> None:
        try:
            self.params = PostgresParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(
                parameters_problem("postgres persistence", exc, PostgresParams)
            ) from None
        self.schema = self.params.db_schema
        self._ident = sql.Identifier(self.schema)
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._hold: psycopg.Connection[Any] | None = None
        # (highest fill seq, highest snapshot save) as this instance last knew them: at open,
        # then after each of its own writes. Another writer raises one of them.
        self._known_state: tuple[int, int] = (0, 0)
        self._refused: PersistenceError | None = None

    @property
    def where(self) -> str:
        """``user@host:port/dbname schema=...``: names the database in messages."""
        p = self.params
        return f"postgres {p.user}@{p.host}:{p.port}/{p.dbname} schema={self.schema}"

    def __repr__(self) -> str:
        p = self.params
        return (
            f"PostgresPersistence(host={p.host!r}, port={p.port}, dbname={p.dbname!r}, "
            f"user={p.user!r}, schema={self.schema!r})"
        )

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc).strip()
        if self.params.password is not None:
            secret = self.params.password.get_secret_value()
            if secret:
                text = text.replace(secret, "**********")
        return text

    def _fail(self, exc: BaseException, action: str) -> PersistenceError:
        return PersistenceError(f"{self.where}: {action} failed: {self._scrub(exc)}")

    def _q(self, statement: str) -> sql.Composed:
        return sql.SQL(statement).format(schema=self._ident)

    # ---- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create or migrate the schema, and start the connection pool."""
        with self._lock:
            if self._pool is not None:
                return
            kwargs = self.params.connect_kwargs()
            try:
                with psycopg.connect(**kwargs) as conn:
                    self._migrate(conn)
                    known_state = self._state_marker(conn)
            except psycopg.Error as exc:
                raise self._fail(exc, "opening") from None
            pool = ConnectionPool(
                conninfo="",
                kwargs=kwargs,
                min_size=self.params.pool_min_size,
                max_size=self.params.pool_max_size,
                timeout=self.params.connect_timeout_seconds,
                name=f"tradeloom-{self.schema}",
                check=ConnectionPool.check_connection,
                open=False,
            )
            try:
                pool.open(wait=True, timeout=self.params.connect_timeout_seconds)
            except psycopg.Error as exc:
                pool.close()
                raise self._fail(exc, "starting the connection pool") from None
            self._pool = pool
            self._known_state = known_state
            self._refused = None
            logger.info("opened %r (schema version %d)", self, SCHEMA_VERSION)

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Serializes concurrent opens of the same schema; released at commit.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema),))
            self._refuse_a_foreign_schema(conn)
            table = sql.Identifier(self.schema, "tradeloom_migrations").as_string(conn)
            found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if found is None or found[0] is None:
                # Only a new schema is created: a role that may read and write the tables but
                # not create anything opens a schema that is up to date.
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._ident))
                conn.execute(
                    self._q(
                        "CREATE TABLE IF NOT EXISTS {schema}.tradeloom_migrations ("
                        " version integer PRIMARY KEY,"
                        " description text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                )
            row = conn.execute(
                self._q("SELECT COALESCE(MAX(version), 0) FROM {schema}.tradeloom_migrations")
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise PersistenceError(
                    f"{self.where}: database schema version {current} is newer than this "
                    f"tradeloom-postgres supports ({SCHEMA_VERSION}); upgrade tradeloom-postgres"
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    conn.execute(self._q(statement))
                conn.execute(
                    self._q(
                        "INSERT INTO {schema}.tradeloom_migrations (version, description) "
                        "VALUES (%s, %s)"
                    ),
                    (migration.version, migration.description),
                )
                logger.info("%s: applied migration %d", self.where, migration.version)

    def _refuse_a_foreign_schema(self, conn: psycopg.Connection[Any]) -> None:
        """An existing schema with tables of its own but no tradeloom_migrations is another
        application's: nothing is created in it. Relations an extension made there (in
        ``public``, say) are not the schema's own."""
        rows = conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
            "WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid "
            "AND d.deptype = 'e') ORDER BY 1",
            (self.schema,),
        ).fetchall()
        names = [str(row[0]) for row in rows]
        if names and "tradeloom_migrations" not in names:
            raise PersistenceError(
                f"{self.where}: the schema holds tables of its own ({', '.join(names)}) but no "
                "tradeloom schema; refusing to write into it (set `schema` to another name)"
            )

    def close(self) -> None:
        """Close the connection pool and release the writer hold."""
        with self._lock:
            pool, self._pool = self._pool, None
            hold, self._hold = self._hold, None
        if hold is not None:
            hold.close()  # ends the session: the server releases its advisory lock
        if pool is not None:
            pool.close()

    # ---- the writer hold ---------------------------------------------------------------------

    def claim_for_writing(self) -> None:
        """Take the writer hold now rather than at the first write.

        A run that will write calls this right after :meth:`open`, before it loads the state,
        so that a second run on the same schema fails at once instead of at its first write.
        Raises :class:`~tradeloom.errors.PersistenceError` when another session holds the
        schema or has written to it since :meth:`open`. Idempotent while open.
        """
        self._ensure_hold()

    def _state_marker(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        row = conn.execute(
            self._q(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM {schema}.fills), "
                "(SELECT COALESCE(MAX(saved_seq), 0) FROM {schema}.snapshots)"
            )
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def _hold_alive(self) -> bool:
        hold = self._hold
        if hold is None or hold.closed or hold.broken:
            return False
        try:
            # An idle session gets nothing from the server unless it ends it (restart,
            # pg_terminate_backend): anything to read means the hold is gone. No round trip.
            readable, _, _ = select.select([hold.pgconn.socket], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        return not readable

    def _ensure_hold(self) -> None:
        """Take (or take again) the writer hold; raises when it cannot be had."""
        with self._lock:
            if self._pool is None:
                raise PersistenceError(
                    f"{self.where}: postgres persistence is not open; call open()"
                )
            if self._refused is not None:
                raise self._refused
            if self._hold_alive():
                return
            if self._hold is not None:
                logger.warning("%s: the writer hold's connection was lost; taking it again", self)
                self._hold.close()
                self._hold = None
            self._hold = self._take_hold()

    def _take_hold(self) -> psycopg.Connection[Any]:
        kwargs = self.params.connect_kwargs()
        # Names this process in pg_stat_activity, for the error another process shows.
        kwargs["application_name"] = f"{self.params.application_name} pid {os.getpid()}"[:63]
        key = _lock_key(self.schema, "write")
        try:
            hold = psycopg.connect(**kwargs, autocommit=True)
        except psycopg.Error as exc:
            raise self._fail(exc, "taking the writer hold") from None
        try:
            row = hold.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (row and row[0]):
                raise PersistenceError(
                    f"{self.where} is in use by another tradeloom process "
                    f"({self._holder(hold, key)}); two runs on one schema would corrupt it"
                )
            now = self._state_marker(hold)
            if now != self._known_state:
                known = self._known_state
                self._refused = PersistenceError(
                    f"{self.where}: another process wrote to this schema after this one "
                    f"opened it (fills journal at seq {known[0]} then {now[0]}, snapshot saves "
                    f"{known[1]} then {now[1]}); two runs on one schema would corrupt it, so "
                    "this one writes nothing (it loaded its state before those writes)"
                )
                raise self._refused
        except psycopg.Error as exc:
            hold.close()
            raise self._fail(exc, "taking the writer hold") from None
        except BaseException:
            hold.close()
            raise
        return hold

    def _holder(self, conn: psycopg.Connection[Any], key: int) -> str:
        """Who holds the writer lock ``key``, as far as this role may see."""
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        row = conn.execute(
            "SELECT a.pid, a.application_name, host(a.client_addr) FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return "unknown session"
        backend, application, client = row
        parts = [f"application_name {application!r}"] if application else []
        parts.append(f"client {client or 'local socket'}")
        parts.append(f"server backend pid {backend}")
        return ", ".join(parts)

    def _get_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is None:
            raise PersistenceError(f"{self.where}: postgres persistence is not open; call open()")
        return pool

    # ---- fills -------------------------------------------------------------------------------

    def record_fills(self, fills: Sequence[Fill]) -> None:
        """Append fills in order; a fill whose ``order_id`` is stored already is ignored."""
        rows = [
            (
                fill.order_id,
                fill.fill_id,
                fill.strategy_id,
                fill.instrument,
                fill.ts,
                _reported(fill.quantity),
                _reported(fill.price),
                fill.model_dump_json(),
            )
            for fill in fills
        ]
        if not rows:
            return
        statement = self._q(
            "INSERT INTO {schema}.fills (order_id, fill_id, portfolio_id, instrument, ts, "
            "quantity, price, event) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb) "
            "ON CONFLICT (order_id) DO NOTHING RETURNING seq"
        )
        self._ensure_hold()
        pool = self._get_pool()
        try:
            with pool.connection() as conn, conn.cursor() as cursor:
                cursor.executemany(statement, rows, returning=True)
                written = [0]
                while True:
                    written.extend(int(row[0]) for row in cursor.fetchall())
                    if not cursor.nextset():
                        break
        except psycopg.Error as exc:
            raise self._fail(exc, "recording fills") from exc
        with self._lock:
            known = self._known_state
            self._known_state = (max(known[0], *written), known[1])

    def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        """The journaled fills (of one portfolio, or all) in the order recorded."""
        if portfolio_id is None:
            return self._load_fills(
                "SELECT seq, portfolio_id, event::text FROM {schema}.fills ORDER BY seq", ()
            )
        return self._load_fills(
            "SELECT seq, portfolio_id, event::text FROM {schema}.fills "
            "WHERE portfolio_id = %s ORDER BY seq",
            (portfolio_id,),
        )

    def load_fills_after(self, count: int) -> list[Fill]:
        """The journaled fills of every portfolio after the first ``count``, in the order
        recorded: what was journaled since a reader had ``count`` of them. (One writer at a
        time, its batches one after another: rows become visible in ``seq`` order.)"""
        return self._load_fills(
            "SELECT seq, portfolio_id, event::text FROM {schema}.fills ORDER BY seq OFFSET %s",
            (journal_count(count),),
        )

    def _load_fills(self, query: LiteralString, params: tuple[object, ...]) -> list[Fill]:
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                rows = conn.execute(self._q(query), params).fetchall()
        except psycopg.Error as exc:
            raise self._fail(exc, "loading fills") from exc
        fills: list[Fill] = []
        for seq, owner, data in rows:
            where = f"{self.where}: table {self.schema}.fills, row seq={seq}, portfolio {owner!r}"
            fills.append(decode_stored_fill(data, where=where, portfolio_id=owner))
        return fills

    # ---- rejections --------------------------------------------------------------------------

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Append rejections in order; one whose signal has a stored rejection is ignored."""
        rows = [(r.signal.event_id, r.model_dump_json()) for r in rejections]
        if not rows:
            return
        # Made by the first record, as the metadata table is. The event is kept as JSON text,
        # not jsonb: a validator's reason may hold a NUL, which jsonb refuses.
        create = self._q(
            "CREATE TABLE IF NOT EXISTS {schema}.tradeloom_rejections (seq bigserial PRIMARY "
            "KEY, signal_id uuid NOT NULL UNIQUE, event text NOT NULL)"
        )
        insert = self._q(
            "INSERT INTO {schema}.tradeloom_rejections (signal_id, event) VALUES (%s, %s) "
            "ON CONFLICT (signal_id) DO NOTHING"
        )
        self._write_rows("tradeloom_rejections", create, insert, rows, "recording rejections")

    def load_rejections(self, after: int = 0) -> list[Rejection]:
        """The journaled rejections after the first ``after``, in the order recorded."""
        skip = journal_count(after, "load_rejections", "rejections")
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                if not self._has_table(conn, "tradeloom_rejections"):
                    return []
                rows = conn.execute(
                    self._q(
                        "SELECT seq, event FROM {schema}.tradeloom_rejections ORDER BY seq "
                        "OFFSET %s"
                    ),
                    (skip,),
                ).fetchall()
        except psycopg.Error as exc:
            raise self._fail(exc, "loading rejections") from exc
        table = f"{self.where}: table {self.schema}.tradeloom_rejections"
        return [
            decode_stored_rejection(data, where=f"{table}, row seq={seq}") for seq, data in rows
        ]

    def count_rejections(self) -> int:
        """How many rejections the journal holds."""
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                if not self._has_table(conn, "tradeloom_rejections"):
                    return 0
                row = conn.execute(
                    self._q("SELECT count(*) FROM {schema}.tradeloom_rejections")
                ).fetchone()
        except psycopg.Error as exc:
            raise self._fail(exc, "counting rejections") from exc
        return int(row[0]) if row is not None else 0

    def _write_rows(
        self,
        table: str,
        create: sql.Composed,
        statement: sql.Composed,
        rows: Sequence[tuple[Any, ...]],
        action: str,
    ) -> None:
        """``statement`` for each of ``rows``, in one transaction under the writer hold, in
        ``table``, made first with ``create`` when it is missing."""
        self._ensure_hold()
        pool = self._get_pool()
        try:
            with pool.connection() as conn, conn.transaction():
                self._ensure_table(conn, table, create)
                with conn.cursor() as cursor:
                    cursor.executemany(statement, rows)
        except psycopg.Error as exc:
            raise self._fail(exc, action) from exc

    def _ensure_table(self, conn: psycopg.Connection[Any], name: str, create: sql.Composed) -> None:
        """Run ``create`` (a ``CREATE TABLE IF NOT EXISTS``) only when table ``name`` is
        missing: PostgreSQL checks the CREATE right on the schema before it looks whether the
        table exists, and an application role granted only the table's rights has none."""
        if not self._has_table(conn, name):
            conn.execute(create)

    def _has_table(self, conn: psycopg.Connection[Any], name: str) -> bool:
        table = sql.Identifier(self.schema, name).as_string(conn)
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        return exists is not None and exists[0] is not None

    # ---- snapshots ---------------------------------------------------------------------------

    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        """Store snapshots in one transaction: all of them, or none when anything fails."""
        # Serialize the whole batch before the transaction starts.
        rows = [
            (
                snapshot.portfolio_id,
                _reported(snapshot.cash),
                _reported(snapshot.equity),
                snapshot.model_dump_json(),
            )
            for snapshot in snapshots
        ]
        if not rows:
            return
        upsert = self._q(
            "INSERT INTO {schema}.snapshots (portfolio_id, saved_seq, cash, equity, snapshot) "
            "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (portfolio_id) DO UPDATE SET "
            "saved_seq = EXCLUDED.saved_seq, saved_at = now(), cash = EXCLUDED.cash, "
            "equity = EXCLUDED.equity, snapshot = EXCLUDED.snapshot"
        )
        self._ensure_hold()
        pool = self._get_pool()
        try:
            with pool.connection() as conn, conn.transaction():
                row = conn.execute(
                    sql.SQL("SELECT nextval({}::regclass)").format(
                        sql.Literal(sql.Identifier(self.schema, "snapshot_saves").as_string(conn))
                    )
                ).fetchone()
                saved_seq = row[0] if row else 0
                with conn.cursor() as cursor:
                    cursor.executemany(
                        upsert,
                        [(pid, saved_seq, cash, equity, data) for pid, cash, equity, data in rows],
                    )
        except psycopg.Error as exc:
            raise self._fail(exc, "saving snapshots") from exc
        with self._lock:
            known = self._known_state
            self._known_state = (known[0], max(known[1], int(saved_seq)))

    def save_metadata(self, items: Mapping[str, str]) -> None:
        """Keep each key's latest value, in one transaction."""
        rows = list(check_metadata(items).items())
        if not rows:
            return
        # Made by the first save, under the writer hold, not by a migration: a schema without
        # it is read as before (by roles that may not write, by an older tradeloom-postgres).
        create = self._q(
            "CREATE TABLE IF NOT EXISTS {schema}.tradeloom_metadata "
            "(key text PRIMARY KEY, value text NOT NULL)"
        )
        upsert = self._q(
            "INSERT INTO {schema}.tradeloom_metadata (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )
        self._write_rows("tradeloom_metadata", create, upsert, rows, "saving metadata")

    def load_metadata(self) -> dict[str, str]:
        """What :meth:`save_metadata` saved: each key's latest value (none before the first)."""
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                if not self._has_table(conn, "tradeloom_metadata"):
                    return {}
                rows = conn.execute(
                    self._q("SELECT key, value FROM {schema}.tradeloom_metadata ORDER BY key")
                ).fetchall()
        except psycopg.Error as exc:
            raise self._fail(exc, "loading metadata") from exc
        return {str(key): str(value) for key, value in rows}

    def load_snapshots(self) -> dict[str, PortfolioSnapshot]:
        """The latest snapshot of every portfolio, by portfolio id."""
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                rows = conn.execute(
                    self._q(
                        "SELECT portfolio_id, snapshot::text FROM {schema}.snapshots "
                        "ORDER BY portfolio_id"
                    )
                ).fetchall()
        except psycopg.Error as exc:
            raise self._fail(exc, "loading snapshots") from exc
        loaded: dict[str, PortfolioSnapshot] = {}
        for portfolio_id, data in rows:
            where = f"{self.where}: table {self.schema}.snapshots, portfolio {portfolio_id!r}"
            loaded[portfolio_id] = decode_stored_snapshot(
                data, where=where, portfolio_id=portfolio_id
            )
        return loaded
