"""The postgres back end on a real PostgreSQL server: the conformance suite plus migrations,
NUMERIC scale, secrets and damaged rows."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import LiteralString

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr
from tradeloom.components import Persistence
from tradeloom.errors import ConfigError, CorruptStateError, PersistenceError
from tradeloom.plugins import PluginManager
from tradeloom.testing.persistence import (
    PersistenceConformance,
    assert_exactly_equal,
    make_fill,
    make_rejection,
    make_snapshot,
    open_together,
)

from pg_testserver import PostgresServer
from tradeloom_postgres import plugin
from tradeloom_postgres.persistence import MIGRATIONS, SCHEMA_VERSION, PostgresPersistence


@pytest.fixture
def schema(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, unique schema name; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    with postgres_server.admin_connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _admin(server: PostgresServer, statement: str, schema: str, *params: object) -> list[tuple]:
    with server.admin_connect() as conn:
        cursor = conn.execute(
            sql.SQL(statement).format(schema=sql.Identifier(schema)), params or None
        )
        return cursor.fetchall() if cursor.description else []


class TestPostgresPersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self, postgres_server: PostgresServer, schema: str) -> PostgresPersistence:
        return PostgresPersistence(**postgres_server.params(schema=schema, pool_max_size=2))

    def reopen(self, persistence: Persistence) -> Persistence:
        assert isinstance(persistence, PostgresPersistence)
        return PostgresPersistence(
            **persistence.params.model_dump(by_alias=True, exclude={"password"}),
            password=persistence.params.password,
        )

    def corrupt_a_snapshot(self, persistence: Persistence, portfolio_id: str) -> str:
        _damage_one_row(
            persistence,
            "UPDATE {}.snapshots SET snapshot = "
            "jsonb_set(snapshot, '{{cash}}', '\"lots\"') WHERE portfolio_id = %s",
            portfolio_id,
        )
        return f"snapshots, portfolio {portfolio_id!r}: stored snapshot is invalid: cash:"

    def corrupt_a_fill(self, persistence: Persistence, portfolio_id: str) -> str:
        _damage_one_row(
            persistence,
            "UPDATE {}.fills SET event = event - 'side' WHERE portfolio_id = %s",
            portfolio_id,
        )
        return f"portfolio {portfolio_id!r}: stored fill is invalid: side:"


def _damage_one_row(persistence: Persistence, update: LiteralString, portfolio_id: str) -> None:
    """Run ``update`` (``{}``: the schema; ``%s``: the portfolio id) outside the back end."""
    assert isinstance(persistence, PostgresPersistence)
    with psycopg.connect(**persistence.params.connect_kwargs()) as conn:
        statement = sql.SQL(update).format(sql.Identifier(persistence.schema))
        changed = conn.execute(statement, (portfolio_id,)).rowcount
    assert changed == 1


@pytest.fixture
def store(postgres_server: PostgresServer, schema: str) -> Iterator[PostgresPersistence]:
    persistence = PostgresPersistence(**postgres_server.params(schema=schema))
    persistence.open()
    yield persistence
    persistence.close()


def test_plugin_registers_postgres() -> None:
    # Registered by reference, imported only when a postgres persistence is built.
    assert plugin.tradeloom_register_persistence() == {
        "postgres": "tradeloom_postgres.persistence:PostgresPersistence"
    }
    manager = PluginManager().load()
    assert manager.factory("persistence", "postgres").resolve() is PostgresPersistence
    entry_points = importlib.metadata.entry_points(group="tradeloom", name="postgres")
    assert [ep.value for ep in entry_points] == ["tradeloom_postgres.plugin"]


def test_numeric_columns_keep_scale(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    store.record_fills([make_fill("a", quantity="0.000100", price="100.10")])
    store.save_snapshots([make_snapshot("a", cash="100.10", equity="250.000")])
    [(price, quantity)] = _admin(
        postgres_server, "SELECT price, quantity FROM {schema}.fills", schema
    )
    [(cash, equity)] = _admin(
        postgres_server, "SELECT cash, equity FROM {schema}.snapshots", schema
    )
    assert (price.as_tuple(), quantity.as_tuple()) == (
        Decimal("100.10").as_tuple(),
        Decimal("0.000100").as_tuple(),
    )
    assert (str(cash), str(equity)) == ("100.10", "250.000")


def test_values_numeric_cannot_hold_are_stored_exactly_and_reported_as_nan(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    # The events take prices down to 1E-100000 and amounts of any size; numeric holds 16383
    # digits after the point. Such a fill failed to be journaled, and kept every later one
    # out of the journal with it.
    tiny, huge = Decimal("1E-20000"), Decimal("-1E+131073")
    store.record_fills([make_fill("a", price=tiny), make_fill("a", price="100.10")])
    store.save_snapshots([make_snapshot("a", cash=huge, equity=tiny)])
    prices = _admin(postgres_server, "SELECT price FROM {schema}.fills ORDER BY seq", schema)
    assert prices[0][0].is_nan() and prices[1][0] == Decimal("100.10")
    [(cash, equity)] = _admin(
        postgres_server, "SELECT cash, equity FROM {schema}.snapshots", schema
    )
    assert cash.is_nan() and equity.is_nan()
    assert [fill.price for fill in store.load_fills()] == [tiny, Decimal("100.10")]
    snapshot = store.load_snapshots()["a"]
    assert (snapshot.cash, snapshot.equity) == (huge, tiny)
    assert SCHEMA_VERSION == 1  # no schema change: older versions still open it


def test_json_keeps_decimals_as_strings(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    store.save_snapshots([make_snapshot("a", cash="1E+3")])
    [(kind, text)] = _admin(
        postgres_server,
        "SELECT jsonb_typeof(snapshot->'cash'), snapshot->>'cash' FROM {schema}.snapshots",
        schema,
    )
    assert (kind, text) == ("string", "1E+3")
    assert str(store.load_snapshots()["a"].cash) == "1E+3"


def test_migrations_recorded_once(postgres_server: PostgresServer, schema: str) -> None:
    for _ in range(2):
        persistence = PostgresPersistence(**postgres_server.params(schema=schema))
        persistence.open()
        persistence.close()
    rows = _admin(
        postgres_server, "SELECT version FROM {schema}.tradeloom_migrations ORDER BY 1", schema
    )
    assert rows == [(migration.version,) for migration in MIGRATIONS]


def test_concurrent_opens_of_a_new_schema(postgres_server: PostgresServer, schema: str) -> None:
    instances = [
        PostgresPersistence(**postgres_server.params(schema=schema, pool_min_size=0))
        for _ in range(5)
    ]
    assert open_together(instances) == []
    rows = _admin(
        postgres_server, "SELECT version FROM {schema}.tradeloom_migrations ORDER BY 1", schema
    )
    assert rows == [(migration.version,) for migration in MIGRATIONS]


def test_newer_schema_version_is_refused(postgres_server: PostgresServer, schema: str) -> None:
    first = PostgresPersistence(**postgres_server.params(schema=schema))
    first.open()
    first.close()
    _admin(
        postgres_server,
        "INSERT INTO {schema}.tradeloom_migrations (version, description) VALUES (99, 'future')",
        schema,
    )
    with pytest.raises(PersistenceError) as info:
        PostgresPersistence(**postgres_server.params(schema=schema)).open()
    assert not isinstance(info.value, CorruptStateError)
    assert f"schema={schema}" in str(info.value)
    assert (
        f"schema version 99 is newer than this tradeloom-postgres supports ({SCHEMA_VERSION})"
        in str(info.value)
    )


def test_a_schema_with_another_applications_tables_is_refused_untouched(
    postgres_server: PostgresServer, schema: str
) -> None:
    _admin(postgres_server, "CREATE SCHEMA {schema}", schema)
    _admin(postgres_server, "CREATE TABLE {schema}.customers (name text)", schema)
    with pytest.raises(PersistenceError) as info:
        PostgresPersistence(**postgres_server.params(schema=schema)).open()
    assert not isinstance(info.value, CorruptStateError)
    assert "holds tables of its own (customers) but no tradeloom schema" in str(info.value)
    tables = _admin(
        postgres_server,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        schema,
        schema,
    )
    assert tables == [("customers",)]


def test_relations_an_extension_made_in_the_schema_are_not_its_own(
    postgres_server: PostgresServer, schema: str
) -> None:
    _admin(postgres_server, "CREATE SCHEMA {schema}", schema)
    # An extension available in every PostgreSQL that makes a table: plpgsql makes none.
    available = _admin(
        postgres_server,
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'",
        schema,
    )
    if not available:
        pytest.skip("pg_stat_statements is not available in this PostgreSQL")
    _admin(postgres_server, "CREATE EXTENSION pg_stat_statements SCHEMA {schema}", schema)
    _admin(postgres_server, f"GRANT ALL ON SCHEMA {{schema}} TO {postgres_server.user}", schema)
    try:
        persistence = PostgresPersistence(**postgres_server.params(schema=schema))
        persistence.open()
        persistence.close()
    finally:
        _admin(postgres_server, "DROP EXTENSION pg_stat_statements", schema)


def test_password_is_never_shown(
    postgres_server: PostgresServer, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    persistence = PostgresPersistence(**postgres_server.params(schema=schema))
    persistence.open()
    persistence.record_fills([make_fill()])
    persistence.close()
    for shown in (
        repr(persistence),
        str(persistence.params),
        repr(persistence.params),
        caplog.text,
    ):
        assert postgres_server.password not in shown
    assert "opened PostgresPersistence(" in caplog.text

    wrong = "wrong-" + postgres_server.password
    with pytest.raises(PersistenceError) as info:
        PostgresPersistence(**postgres_server.params(schema=schema, password=wrong)).open()
    assert "password authentication failed" in str(info.value)
    assert f"postgres tradeloom@127.0.0.1:{postgres_server.port}/tradeloom" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert info.value.__cause__ is None


def test_password_as_secret_str(postgres_server: PostgresServer, schema: str) -> None:
    params = postgres_server.params(schema=schema)
    params["password"] = SecretStr(params["password"])
    persistence = PostgresPersistence(**params)
    persistence.open()
    assert persistence.load_snapshots() == {}
    persistence.close()


def test_password_from_environment(
    postgres_server: PostgresServer, schema: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradeloom.settings import load_settings

    config = tmp_path / "tradeloom.toml"
    config.write_text(
        "[persistence]\n"
        'name = "postgres"\n'
        f'params = {{ host = "127.0.0.1", port = {postgres_server.port}, dbname = "tradeloom", '
        f'user = "tradeloom", sslmode = "disable", schema = "{schema}" }}\n'
    )
    monkeypatch.setenv("TRADELOOM_PERSISTENCE__PARAMS__PASSWORD", postgres_server.password)
    settings = load_settings(config)
    assert settings.persistence.name == "postgres"
    persistence = PostgresPersistence(**settings.persistence.params)
    persistence.open()
    persistence.save_snapshots([make_snapshot("env")])
    assert list(persistence.load_snapshots()) == ["env"]
    persistence.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"port": 0}, "port: Input should be greater than or equal to 1"),
        ({"port": True}, "port: true is a boolean; it takes int"),
        ({"schema": "bad-name; DROP"}, "schema: String should match pattern"),
        ({"pool_min_size": 5, "pool_max_size": 2}, "pool_max_size (2) is below pool_min_size (5)"),
        ({"hots": "x"}, "hots: unknown parameter (did you mean 'host'?) (accepted: host, port,"),
        ({"pool_max_size": 2, "dsn": "x"}, "dsn: unknown parameter (accepted: host, port, "),
        ({"sslmode": "maybe"}, "sslmode: Input should be 'disable'"),
    ],
)
def test_bad_params(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PostgresPersistence(**params)
    assert message in str(info.value)


def test_bad_password_type_does_not_echo_it() -> None:
    with pytest.raises(ConfigError, match="password: Input should be a valid string") as info:
        PostgresPersistence(password=918273645)
    assert "918273645" not in str(info.value)


def test_unreachable_server_names_it() -> None:
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    persistence = PostgresPersistence(port=port, password="x", connect_timeout_seconds=3)
    with pytest.raises(PersistenceError) as info:
        persistence.open()
    assert f"postgres tradeloom@127.0.0.1:{port}/tradeloom schema=tradeloom: opening failed" in str(
        info.value
    )
    assert "refused" in str(info.value).lower()


def test_use_before_open() -> None:
    with pytest.raises(PersistenceError, match="not open; call open"):
        PostgresPersistence().load_fills()


def test_snapshot_row_failing_validation(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    store.save_snapshots([make_snapshot("ok"), make_snapshot("bad")])
    _admin(
        postgres_server,
        "UPDATE {schema}.snapshots SET snapshot = jsonb_set(snapshot, '{{equity}}', '\"NaN\"') "
        "WHERE portfolio_id = 'bad'",
        schema,
    )
    with pytest.raises(CorruptStateError) as info:
        store.load_snapshots()
    message = str(info.value)
    assert f"table {schema}.snapshots, portfolio 'bad'" in message
    assert "equity: Input should be a finite number" in message


def test_snapshot_row_under_wrong_portfolio(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    store.save_snapshots([make_snapshot("a"), make_snapshot("b")])
    _admin(
        postgres_server,
        "UPDATE {schema}.snapshots SET snapshot = jsonb_set(snapshot, '{{portfolio_id}}', '\"b\"') "
        "WHERE portfolio_id = 'a'",
        schema,
    )
    with pytest.raises(
        CorruptStateError, match="portfolio 'a': the stored snapshot belongs to portfolio 'b'"
    ):
        store.load_snapshots()


def test_fill_row_failing_validation(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    store.record_fills([make_fill("a"), make_fill("b")])
    _admin(
        postgres_server,
        "UPDATE {schema}.fills SET event = event - 'order_id' WHERE portfolio_id = 'b'",
        schema,
    )
    with pytest.raises(CorruptStateError) as info:
        store.load_fills()
    assert f"table {schema}.fills, row seq=2, portfolio 'b'" in str(info.value)
    assert "order_id: Field required" in str(info.value)
    assert len(store.load_fills("a")) == 1


def test_pool_serves_worker_threads(store: PostgresPersistence) -> None:
    batches = [[make_fill(f"p{n}") for _ in range(10)] for n in range(6)]
    threads = [threading.Thread(target=store.record_fills, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number, batch in enumerate(batches):
        assert_exactly_equal(store.load_fills(f"p{number}"), batch)


def test_built_from_configuration(postgres_server: PostgresServer, schema: str) -> None:
    from tradeloom.plugins import load_plugin_manager

    manager = load_plugin_manager()
    persistence = manager.create("persistence", "postgres", postgres_server.params(schema=schema))
    assert isinstance(persistence, PostgresPersistence)
    persistence.open()
    persistence.record_fills([make_fill("cfg")])
    assert [fill.strategy_id for fill in persistence.load_fills()] == ["cfg"]
    persistence.close()


# ---- one writer per schema --------------------------------------------------------------------


def test_two_instances_read_one_schema_and_the_first_to_write_holds_it(
    postgres_server: PostgresServer, schema: str
) -> None:
    first = PostgresPersistence(**postgres_server.params(schema=schema, application_name="one"))
    second = PostgresPersistence(**postgres_server.params(schema=schema))
    first.open()
    second.open()
    try:
        assert first.load_fills() == second.load_fills() == []  # readers take no hold
        first.record_fills([make_fill("a"), make_fill("a")])
        with pytest.raises(PersistenceError) as info:
            second.record_fills([make_fill("b")])
        message = str(info.value)
        assert f"postgres {postgres_server.user}@" in message and f"schema={schema}" in message
        assert (
            f"is in use by another tradeloom process (application_name 'one pid {os.getpid()}'"
            in (message)
        )
        assert "two runs on one schema would corrupt it" in message
        with pytest.raises(PersistenceError, match="in use by another tradeloom process"):
            second.save_snapshots([make_snapshot("b")])
        first.save_snapshots([make_snapshot("a")])
        first.close()
        # Free now, but `second` loaded its state before `first` wrote.
        with pytest.raises(PersistenceError) as stale:
            second.claim_for_writing()
        assert "another process wrote to this schema after this one opened it" in str(stale.value)
        assert "(fills journal at seq 0 then 2, snapshot saves 0 then 1)" in str(stale.value)
        with pytest.raises(PersistenceError, match="another process wrote"):
            second.record_fills([make_fill("b")])
    finally:
        first.close()
        second.close()
    assert _admin(postgres_server, "SELECT count(*) FROM {schema}.fills", schema) == [(2,)]
    third = PostgresPersistence(**postgres_server.params(schema=schema))
    third.open()
    third.claim_for_writing()
    third.claim_for_writing()  # idempotent
    third.record_fills([make_fill("b")])
    assert len(third.load_fills()) == 3
    third.close()
    # The same instance closes and reopens (a resumed run): it holds the schema again.
    third.open()
    third.record_fills([make_fill("c")])
    third.close()
    assert _admin(postgres_server, "SELECT count(*) FROM {schema}.fills", schema) == [(4,)]


def test_claim_needs_an_open_instance() -> None:
    with pytest.raises(PersistenceError, match="not open; call open"):
        PostgresPersistence().claim_for_writing()


_HOLDER = """
import json, sys
from tradeloom_postgres.persistence import PostgresPersistence
store = PostgresPersistence(**json.loads(sys.argv[1]))
store.open()
store.claim_for_writing()
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_killed_process_releases_the_schema(postgres_server: PostgresServer, schema: str) -> None:
    params = postgres_server.params(schema=schema, application_name="holder")
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, json.dumps(params)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    store = PostgresPersistence(**postgres_server.params(schema=schema))
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "holding\n"
        store.open()
        with pytest.raises(PersistenceError) as info:
            store.record_fills([make_fill("a")])
        assert f"application_name 'holder pid {process.pid}'" in str(info.value)
    finally:
        process.kill()  # SIGKILL: no close() runs
        process.wait()
    # The server ends the dead client's session, and with it the lock (shortly after).
    deadline = time.monotonic() + 30
    while True:
        try:
            store.record_fills([make_fill("a")])
            break
        except PersistenceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    store.close()
    assert _admin(postgres_server, "SELECT count(*) FROM {schema}.fills", schema) == [(1,)]


def test_a_lost_hold_is_taken_again_when_nobody_else_wrote(
    postgres_server: PostgresServer, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresPersistence(**postgres_server.params(schema=schema, application_name="lost"))
    store.open()
    try:
        store.record_fills([make_fill("a")])
        store.save_snapshots([make_snapshot("a")])
        _admin(
            postgres_server,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'lost pid {os.getpid()}'",
            schema,
        )
        deadline = time.monotonic() + 10
        while store._hold_alive():  # the server's goodbye arrives shortly
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with caplog.at_level(logging.WARNING):
            store.record_fills([make_fill("a")])  # its own writes do not count against it
        assert "writer hold's connection was lost; taking it again" in caplog.text
        other = PostgresPersistence(**postgres_server.params(schema=schema))
        other.open()
        with pytest.raises(PersistenceError, match="is in use by another tradeloom process"):
            other.claim_for_writing()
        other.close()
    finally:
        store.close()


# ---- newer schema versions of stored events ---------------------------------------------------


def test_stored_events_of_a_newer_schema_version_are_refused(
    store: PostgresPersistence, postgres_server: PostgresServer, schema: str
) -> None:
    store.record_fills([make_fill("a"), make_fill("b")])
    store.save_snapshots([make_snapshot("a")])
    _admin(
        postgres_server,
        "UPDATE {schema}.fills SET event = jsonb_set(event, '{{schema_version}}', '7') "
        "WHERE portfolio_id = 'b'",
        schema,
    )
    _admin(
        postgres_server,
        "UPDATE {schema}.snapshots SET snapshot = jsonb_set(snapshot, '{{schema_version}}', '2')",
        schema,
    )
    before = _admin(postgres_server, "SELECT event::text FROM {schema}.fills ORDER BY seq", schema)
    with pytest.raises(PersistenceError) as fill_error:
        store.load_fills()
    assert not isinstance(fill_error.value, CorruptStateError)
    assert f"table {schema}.fills, row seq=2, portfolio 'b': stored fill has schema_version 7" in (
        str(fill_error.value)
    )
    assert "newer than the supported version 1" in str(fill_error.value)
    with pytest.raises(
        PersistenceError, match="portfolio 'a': stored snapshot has schema_version 2"
    ):
        store.load_snapshots()
    assert len(store.load_fills("a")) == 1
    after = _admin(postgres_server, "SELECT event::text FROM {schema}.fills ORDER BY seq", schema)
    assert after == before


def test_metadata_needs_no_migration_and_is_made_by_the_first_save(
    postgres_server: PostgresServer, schema: str
) -> None:
    first = PostgresPersistence(**postgres_server.params(schema=schema))
    first.open()
    try:
        fills = [make_fill("alpha"), make_fill("beta")]
        first.record_fills(fills)
        assert first.load_metadata() == {}
        tables = _admin(
            postgres_server,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
            schema,
            schema,
        )
        assert ("tradeloom_metadata",) not in tables
        first.save_metadata({"k": "v"})
        first.save_metadata({"k": "w", "other": "x"})
        assert first.load_metadata() == {"k": "w", "other": "x"}
        assert first.load_fills() == fills
    finally:
        first.close()


def test_a_role_that_may_not_create_anything_opens_and_uses_a_schema_up_to_date(
    postgres_server: PostgresServer, schema: str
) -> None:
    # The schema made by the owner; then a role with only the rights to read and write its
    # tables (no CREATE on the database or the schema), as a DBA would give an application.
    owner = PostgresPersistence(**postgres_server.params(schema=schema))
    owner.open()
    owner.record_fills([make_fill("alpha")])
    owner.close()
    role = f"rw_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin_connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'rw-pass'").format(sql.Identifier(role))
        )
        for statement in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        ):
            conn.execute(
                sql.SQL(statement).format(schema=sql.Identifier(schema), role=sql.Identifier(role))
            )
    try:
        app = PostgresPersistence(
            **postgres_server.params(schema=schema, user=role, password="rw-pass")
        )
        app.open()
        try:
            assert len(app.load_fills()) == 1
            app.record_fills([make_fill("beta")])
            app.save_snapshots([make_snapshot("beta")])
            assert len(app.load_fills()) == 2 and list(app.load_snapshots()) == ["beta"]
            # Creating the metadata table is refused: a PersistenceError, which the pipeline
            # reports as a warning (the record is not kept), not a failed run.
            with pytest.raises(PersistenceError, match="permission denied"):
                app.save_metadata({"k": "v"})
            assert app.load_metadata() == {}
            with pytest.raises(PersistenceError, match="permission denied"):
                app.record_rejections([make_rejection("beta")])
            assert app.load_rejections() == []
        finally:
            app.close()
        # Once the owner has made the tables and granted them (as the README says), the role
        # uses them: no CREATE is tried when the table is there.
        owner = PostgresPersistence(**postgres_server.params(schema=schema))
        owner.open()
        owner.save_metadata({"k": "owner"})
        owner.record_rejections([make_rejection("alpha")])
        owner.close()
        with postgres_server.admin_connect() as conn:
            for statement in (
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            ):
                conn.execute(
                    sql.SQL(statement).format(
                        schema=sql.Identifier(schema), role=sql.Identifier(role)
                    )
                )
        app = PostgresPersistence(
            **postgres_server.params(schema=schema, user=role, password="rw-pass")
        )
        app.open()
        try:
            app.save_metadata({"k": "app"})
            assert app.load_metadata() == {"k": "app"}
            app.record_rejections([make_rejection("beta")])
            assert [r.signal.strategy_id for r in app.load_rejections()] == ["alpha", "beta"]
        finally:
            app.close()
    finally:
        with postgres_server.admin_connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
