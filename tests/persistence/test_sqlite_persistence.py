"""The sqlite back end against the persistence conformance suite, plus damaged files, schema
versions and concurrent use."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tradeloom.components import Persistence
from tradeloom.errors import ConfigError, CorruptStateError, PersistenceError
from tradeloom.testing.persistence import (
    PersistenceConformance,
    assert_exactly_equal,
    make_fill,
    make_snapshot,
    open_together,
)
from tradeloom_sqlite import plugin
from tradeloom_sqlite.persistence import (
    _TABLES,
    APPLICATION_ID,
    LONGEST_BUSY_TIMEOUT_SECONDS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SqlitePersistence,
)


class TestSqlitePersistence(PersistenceConformance):
    @pytest.fixture
    def persistence(self, tmp_path: Path) -> SqlitePersistence:
        return SqlitePersistence(tmp_path / "state" / "tradeloom.sqlite")

    def reopen(self, persistence: Persistence) -> Persistence:
        assert isinstance(persistence, SqlitePersistence)
        return SqlitePersistence(persistence.path)

    def corrupt_a_snapshot(self, persistence: Persistence, portfolio_id: str) -> str:
        _damage_one_row(
            persistence,
            "UPDATE snapshots SET snapshot = json_set(snapshot, '$.cash', 'lots') "
            "WHERE portfolio_id = ?",
            portfolio_id,
        )
        return f"table snapshots, portfolio {portfolio_id!r}: stored snapshot is invalid: cash:"

    def corrupt_a_fill(self, persistence: Persistence, portfolio_id: str) -> str:
        _damage_one_row(
            persistence,
            "UPDATE fills SET event = json_set(event, '$.quantity', '-1') WHERE portfolio_id = ?",
            portfolio_id,
        )
        return f"portfolio {portfolio_id!r}: stored fill is invalid: quantity:"


def _damage_one_row(persistence: Persistence, update: str, portfolio_id: str) -> None:
    """Run ``update`` (one ``?``: the portfolio id) on the back end's file, outside it."""
    assert isinstance(persistence, SqlitePersistence)
    with sqlite3.connect(persistence.path) as raw:
        changed = raw.execute(update, (portfolio_id,)).rowcount
    raw.close()
    assert changed == 1


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tradeloom.sqlite"


@pytest.fixture
def filled_db(db_path: Path) -> Path:
    """A valid database with some fills and snapshots, closed (WAL checkpointed)."""
    store = SqlitePersistence(db_path)
    store.open()
    store.record_fills([make_fill(f"p{i % 7}") for i in range(300)])
    store.save_snapshots([make_snapshot(f"p{i}", cash=f"{i}.50") for i in range(50)])
    store.close()
    assert not Path(f"{db_path}-wal").exists()
    return db_path


def _raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    raw = sqlite3.connect(path)
    try:
        with raw:
            return raw.execute(sql, params).fetchall()
    finally:
        raw.close()


def test_plugin_registers_sqlite() -> None:
    assert plugin.tradeloom_register_persistence() == {"sqlite": SqlitePersistence}
    entry_points = importlib.metadata.entry_points(group="tradeloom", name="sqlite")
    assert [ep.value for ep in entry_points] == ["tradeloom_sqlite.plugin"]


def test_defaults_and_schema(db_path: Path) -> None:
    store = SqlitePersistence(db_path)
    assert store.journal_mode == "wal" and store.synchronous == "normal"
    store.open()
    store.close()
    assert _raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _raw(db_path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert _raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {row[0] for row in _raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"fills", "snapshots"} <= tables


def test_default_path_is_tradeloom_sqlite() -> None:
    assert SqlitePersistence().path == Path("tradeloom.sqlite")


def test_journal_mode_option(db_path: Path) -> None:
    store = SqlitePersistence(db_path, journal_mode="DELETE", synchronous="full")
    store.open()
    store.record_fills([make_fill()])
    store.close()
    assert _raw(db_path, "PRAGMA journal_mode") == [("delete",)]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"journal_mode": "memory"}, "journal_mode 'memory' is not one of wal, delete"),
        ({"synchronous": "off"}, "synchronous 'off' is not one of normal, full, extra"),
        ({"busy_timeout_seconds": -1}, "busy_timeout_seconds must be >= 0"),
    ],
)
def test_bad_params(db_path: Path, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SqlitePersistence(db_path, **params)  # type: ignore[arg-type]


def test_use_before_open(db_path: Path) -> None:
    with pytest.raises(PersistenceError, match="not open; call open"):
        SqlitePersistence(db_path).load_fills()


def test_reopen_is_idempotent_and_keeps_schema(filled_db: Path) -> None:
    store = SqlitePersistence(filled_db)
    store.open()
    store.open()  # a second open is a no-op
    assert len(store.load_snapshots()) == 50
    assert len(store.load_fills()) == 300
    store.close()
    store.close()


# ---- damaged files: never a silent reset ----------------------------------------------------


def test_truncated_file_is_corrupt_state(filled_db: Path) -> None:
    size = filled_db.stat().st_size
    with filled_db.open("r+b") as handle:
        handle.truncate(size // 2)
    store = SqlitePersistence(filled_db)
    with pytest.raises(CorruptStateError) as info:
        store.open()
        store.load_snapshots()
    message = str(info.value)
    assert str(filled_db) in message
    assert "malformed" in message
    assert "restore it from a backup" in message
    store.close()
    assert filled_db.stat().st_size == size // 2  # left exactly as it was


def test_garbage_file_is_corrupt_state(db_path: Path) -> None:
    garbage = b"this is not a database, just some bytes\n" * 200
    db_path.write_bytes(garbage)
    with pytest.raises(CorruptStateError) as info:
        SqlitePersistence(db_path).open()
    assert str(db_path) in str(info.value)
    assert "file is not a database" in str(info.value)
    assert db_path.read_bytes() == garbage


def test_empty_file_is_a_new_database(db_path: Path) -> None:
    db_path.touch()
    store = SqlitePersistence(db_path)
    store.open()
    assert store.load_snapshots() == {}
    store.close()


def test_snapshot_row_failing_validation(filled_db: Path) -> None:
    _raw(
        filled_db,
        "UPDATE snapshots SET snapshot = json_set(snapshot, '$.equity', 'NaN') "
        "WHERE portfolio_id = 'p7'",
    )
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(CorruptStateError) as info:
        store.load_snapshots()
    message = str(info.value)
    assert str(filled_db) in message
    assert "table snapshots, portfolio 'p7'" in message
    assert "equity: Input should be a finite number" in message
    assert len(store.load_fills()) == 300  # the journal is still readable
    store.close()


def test_snapshot_row_that_is_not_json(filled_db: Path) -> None:
    _raw(filled_db, "UPDATE snapshots SET snapshot = '{\"cash\": ' WHERE portfolio_id = 'p3'")
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(
        CorruptStateError, match=r"portfolio 'p3': stored snapshot is invalid: .*JSON"
    ):
        store.load_snapshots()
    store.close()


def test_snapshot_row_holding_a_number(filled_db: Path) -> None:
    _raw(filled_db, "UPDATE snapshots SET snapshot = 42 WHERE portfolio_id = 'p1'")
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(
        CorruptStateError, match=r"portfolio 'p1': .*\(top level\): Input should be an object"
    ):
        store.load_snapshots()
    store.close()


def test_snapshot_stored_under_another_portfolio(filled_db: Path) -> None:
    _raw(
        filled_db,
        "UPDATE snapshots SET snapshot = (SELECT snapshot FROM snapshots WHERE portfolio_id='p2') "
        "WHERE portfolio_id = 'p1'",
    )
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(CorruptStateError, match="portfolio 'p1': the stored snapshot belongs to"):
        store.load_snapshots()
    store.close()


def test_fill_row_failing_validation(filled_db: Path) -> None:
    _raw(filled_db, "UPDATE fills SET event = json_set(event, '$.price', '-1') WHERE seq = 10")
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(CorruptStateError) as info:
        store.load_fills()
    assert "table fills, row seq=10, portfolio 'p2'" in str(info.value)
    assert "price: must be greater than zero" in str(info.value)
    store.close()


# ---- schema versions and foreign files ------------------------------------------------------


def _file_bytes(path: Path) -> bytes:
    assert not Path(f"{path}-wal").exists()
    return path.read_bytes()


def test_stored_snapshot_of_a_newer_schema_version_is_refused(filled_db: Path) -> None:
    _raw(
        filled_db,
        "UPDATE snapshots SET snapshot = json_set(snapshot, '$.schema_version', 2) "
        "WHERE portfolio_id = 'p4'",
    )
    before = _file_bytes(filled_db)
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(PersistenceError) as info:
        store.load_snapshots()
    store.close()
    message = str(info.value)
    assert not isinstance(info.value, CorruptStateError)  # not damaged: written by a newer one
    assert message.startswith(f"{filled_db}: table snapshots, portfolio 'p4': ")
    assert "stored snapshot has schema_version 2, newer than the supported version 1" in message
    assert "upgrade tradeloom" in message
    assert _file_bytes(filled_db) == before


def test_stored_fill_of_a_newer_schema_version_is_refused(filled_db: Path) -> None:
    # A newer event may also carry fields this version does not know: still "newer".
    _raw(
        filled_db,
        "UPDATE fills SET event = json_set(event, '$.schema_version', 7, '$.venue', 'X') "
        "WHERE seq = 12",
    )
    before = _file_bytes(filled_db)
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(PersistenceError) as info:
        store.load_fills()
    with pytest.raises(PersistenceError, match="schema_version 7, newer"):
        store.load_fills("p4")
    assert len(store.load_fills("p3")) > 0  # other portfolios' fills still read
    store.close()
    assert not isinstance(info.value, CorruptStateError)
    assert f"{filled_db}: table fills, row seq=12, portfolio 'p4': stored fill has " in str(
        info.value
    )
    assert "schema_version 7, newer than the supported version 1" in str(info.value)
    assert _file_bytes(filled_db) == before


def test_stored_event_of_schema_version_zero_is_corrupt(filled_db: Path) -> None:
    _raw(filled_db, "UPDATE fills SET event = json_set(event, '$.schema_version', 0) WHERE seq = 3")
    store = SqlitePersistence(filled_db)
    store.open()
    with pytest.raises(
        CorruptStateError, match=r"row seq=3, .*schema_version 0, which is not valid"
    ):
        store.load_fills()
    store.close()


def test_resuming_from_newer_state_is_refused_and_leaves_the_file_as_it_is(
    tmp_path: Path, shared_data: Path
) -> None:
    import tradeloom

    state = tmp_path / "state.sqlite"
    settings = {
        "feed": {
            "name": "replay",
            "params": {
                "path": str(shared_data / "orcl-1995-2014.txt"),
                "format": "yahoo",
                "instrument": "ORCL",
            },
        },
        "strategies": [{"name": "sma_cross", "params": {"quantity": "10"}}],
        "executor": {"name": "paper"},
        "persistence": {"name": "sqlite", "params": {"path": str(state)}},
    }
    tradeloom.backtest(settings)
    _raw(state, "UPDATE snapshots SET snapshot = json_set(snapshot, '$.schema_version', 2)")
    before = _file_bytes(state)
    with pytest.raises(PersistenceError, match="stored snapshot has schema_version 2, newer"):
        tradeloom.backtest(settings, resume=True)
    assert _file_bytes(state) == before


def test_newer_schema_version_is_refused(filled_db: Path) -> None:
    _raw(filled_db, f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    with pytest.raises(PersistenceError) as info:
        SqlitePersistence(filled_db).open()
    message = str(info.value)
    assert not isinstance(info.value, CorruptStateError)
    assert str(filled_db) in message
    assert f"schema version {SCHEMA_VERSION + 98} is newer" in message
    assert f"supports ({SCHEMA_VERSION}); upgrade tradeloom" in message
    assert _raw(filled_db, "PRAGMA user_version") == [(SCHEMA_VERSION + 98,)]


def test_foreign_sqlite_database_is_refused(db_path: Path) -> None:
    _raw(db_path, "CREATE TABLE customers (name TEXT)")
    with pytest.raises(PersistenceError, match=r"tables of its own \(customers\) but no tradeloom"):
        SqlitePersistence(db_path).open()
    assert _raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'") == [("customers",)]


def test_another_applications_file_with_a_schema_version_is_refused_unchanged(
    db_path: Path,
) -> None:
    # Its own tables and a user_version of its own: neither written into nor switched to WAL.
    _raw(db_path, "CREATE TABLE users (name TEXT)")
    _raw(db_path, "PRAGMA user_version = 1")
    before = db_path.read_bytes()
    with pytest.raises(
        PersistenceError, match=r"not a tradeloom database \(schema version 1, but tables users\)"
    ):
        SqlitePersistence(db_path).open()
    assert db_path.read_bytes() == before


def test_a_tradeloom_file_with_a_table_a_user_added_still_opens(filled_db: Path) -> None:
    _raw(filled_db, "CREATE TABLE audit (note TEXT)")
    persistence = SqlitePersistence(filled_db)
    persistence.open()
    assert persistence.load_fills()
    persistence.close()


@pytest.mark.parametrize("version", [-1, -3])
def test_a_negative_schema_version_is_refused_unchanged(db_path: Path, version: int) -> None:
    _raw(db_path, f"PRAGMA user_version = {version}")
    before = db_path.read_bytes()
    with pytest.raises(
        PersistenceError, match=rf"not a tradeloom database \(schema version {version}\)"
    ):
        SqlitePersistence(db_path).open()
    assert db_path.read_bytes() == before


def test_every_schema_version_names_its_tables() -> None:
    assert set(_TABLES) == set(MIGRATIONS)


def test_other_application_id_is_refused(db_path: Path) -> None:
    _raw(db_path, "PRAGMA application_id = 1234")
    with pytest.raises(
        PersistenceError, match=r"not a tradeloom database \(application_id 0x4d2\)"
    ):
        SqlitePersistence(db_path).open()


def test_unopenable_path(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()
    with pytest.raises(PersistenceError, match="is a folder; path must name") as info:
        SqlitePersistence(folder).open()
    assert not isinstance(info.value, CorruptStateError)


# ---- concurrency ----------------------------------------------------------------------------


def test_worker_threads_share_one_instance(db_path: Path) -> None:
    store = SqlitePersistence(db_path)
    store.open()
    batches = [[make_fill(f"p{b}") for _ in range(20)] for b in range(8)]

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for batch in batches:
                group.start_soon(anyio.to_thread.run_sync, store.record_fills, batch)
                group.start_soon(anyio.to_thread.run_sync, store.load_snapshots)
            group.start_soon(anyio.to_thread.run_sync, store.save_snapshots, [make_snapshot("p0")])

    anyio.run(main)
    for number, batch in enumerate(batches):
        assert store.load_fills(f"p{number}") == batch
    assert len(store.load_fills()) == 160
    store.close()


def test_two_instances_read_one_file_and_the_first_to_write_holds_it(db_path: Path) -> None:
    first, second = SqlitePersistence(db_path), SqlitePersistence(db_path)
    first.open()
    second.open()
    assert first.load_fills() == second.load_fills() == []  # readers take no hold
    shared = make_fill("a")
    first.record_fills([shared, make_fill("a")])
    with pytest.raises(PersistenceError) as info:
        second.record_fills([shared, make_fill("b")])
    message = str(info.value)
    assert message.startswith(f"state file {db_path} is in use by another instance in this ")
    assert f"(pid {os.getpid()}); two runs on one state file would corrupt it" in message
    with pytest.raises(PersistenceError, match="in use by another instance"):
        second.save_snapshots([make_snapshot("b")])
    assert len(second.load_fills()) == 2  # still a reader
    snapshot = make_snapshot("a", cash="12.340")
    first.save_snapshots([snapshot])
    first.close()
    # The hold is free now, but `second` loaded its state before `first` wrote: writing on top
    # of it would mix two runs, so it is refused for as long as `second` stays open.
    with pytest.raises(PersistenceError) as stale:
        second.record_fills([make_fill("b")])
    assert f"{db_path}: another process wrote to this state file after this one opened it" in (
        str(stale.value)
    )
    assert "(fills journal at seq 0 then 2, snapshot saves 0 then 1)" in str(stale.value)
    with pytest.raises(PersistenceError, match="another process wrote"):
        second.claim_for_writing()
    second.close()
    assert _raw(db_path, "SELECT count(*) FROM fills") == [(2,)]
    third = SqlitePersistence(db_path)
    third.open()
    third.record_fills([make_fill("b")])  # opened after the writes: may write
    assert_exactly_equal(third.load_snapshots(), {"a": snapshot})
    assert len(third.load_fills()) == 3
    third.close()


def test_a_symbolic_link_to_the_file_shares_its_writer_hold(db_path: Path) -> None:
    holder = SqlitePersistence(db_path)
    holder.open()
    holder.claim_for_writing()
    alias = db_path.with_name("alias.sqlite")
    alias.symlink_to(db_path)
    other = SqlitePersistence(alias)
    other.open()
    assert other.lock_path == holder.lock_path
    with pytest.raises(PersistenceError, match="is in use by another instance"):
        other.claim_for_writing()
    # A link moved on after opening: the hold is still the file's it opened.
    alias.unlink()
    alias.symlink_to(db_path.with_name("another.sqlite"))
    assert other.lock_path == holder.lock_path
    other.close()
    holder.close()


def test_claim_for_writing_fails_at_once_and_close_releases_the_hold(db_path: Path) -> None:
    holder = SqlitePersistence(db_path)
    holder.open()
    holder.claim_for_writing()
    holder.claim_for_writing()  # idempotent
    assert holder.lock_path == Path(f"{db_path}.lock")
    assert holder.lock_path.read_text() == f"{os.getpid()}\n"
    other = SqlitePersistence(db_path)
    other.open()
    with pytest.raises(PersistenceError, match=f"state file {re.escape(str(db_path))} is in use"):
        other.claim_for_writing()
    holder.close()
    assert holder.lock_path.read_text() == ""  # no stale pid left behind
    other.claim_for_writing()  # nothing was written meanwhile: free to write
    other.record_fills([make_fill("a")])
    other.close()
    # The same instance closes and reopens (a resumed run): it holds the file again.
    for _ in range(2):
        holder.open()
        holder.record_fills([make_fill("a")])
        holder.close()
    assert _raw(db_path, "SELECT count(*) FROM fills") == [(3,)]


def _make_read_only(path: Path) -> Any:
    """Make ``path`` unwritable (immutable as root, whom file modes do not stop); return how
    to undo it, or skip when this machine cannot."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {done.stderr.decode().strip()}")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o444)
    return lambda: path.chmod(0o644)


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_a_state_file_that_cannot_be_written_is_refused_when_claimed(
    db_path: Path, journal_mode: str
) -> None:
    store = SqlitePersistence(db_path, journal_mode=journal_mode)
    store.open()
    store.record_fills([make_fill("a")])
    store.close()
    undo = _make_read_only(db_path)
    try:
        reader = SqlitePersistence(db_path, journal_mode=journal_mode)
        reader.open()
        assert len(reader.load_fills()) == 1  # it can be read
        with pytest.raises(PersistenceError, match="the state file cannot be written"):
            reader.claim_for_writing()
        reader.close()
    finally:
        undo()


@pytest.mark.skipif(os.name != "posix", reason="file modes as POSIX has them")
def test_sidecar_files_left_read_only_get_the_state_files_mode_back(db_path: Path) -> None:
    # What a run that opened the file while it was read-only leaves: SQLite gave the -wal and
    # -shm files the file's mode then, and only a connection that can write removes them.
    store = SqlitePersistence(db_path)
    store.open()
    store.record_fills([make_fill("a")])
    store.close()
    db_path.chmod(0o640)
    Path(f"{db_path}-wal").write_bytes(b"")
    Path(f"{db_path}-shm").write_bytes(bytes(32768))
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").chmod(0o444)
    again = SqlitePersistence(db_path)
    again.open()
    for suffix in ("-wal", "-shm"):
        assert Path(f"{db_path}{suffix}").stat().st_mode & 0o777 == 0o640
    again.record_fills([make_fill("b")])
    again.close()
    assert _raw(db_path, "SELECT count(*) FROM fills") == [(2,)]


@pytest.mark.skipif(os.name != "posix", reason="file modes as POSIX has them")
def test_a_sidecar_that_is_a_link_is_not_followed_to_change_a_mode(
    db_path: Path, tmp_path: Path
) -> None:
    # Anyone who can write the state folder could otherwise make a private file readable.
    store = SqlitePersistence(db_path)
    store.open()
    store.close()
    private = tmp_path / "id_rsa"
    private.write_text("secret")
    private.chmod(0o600)
    Path(f"{db_path}-wal").symlink_to(private)
    again = SqlitePersistence(db_path)
    with contextlib.suppress(PersistenceError):  # SQLite may refuse the link itself
        again.open()
        again.close()
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text() == "secret"


_READ_ONLY_THEN_WRITABLE = """
import os, sys
from tradeloom.errors import PersistenceError
from tradeloom.testing.persistence import make_fill
from tradeloom_sqlite.persistence import SqlitePersistence

path = sys.argv[1]
store = SqlitePersistence(path)
store.open()
store.record_fills([make_fill("a")])
store.close()
os.chmod(path, 0o444)
refused = SqlitePersistence(path)
refused.open()
try:
    refused.claim_for_writing()
except PersistenceError as exc:
    print("refused:", exc)
refused.close()
os.chmod(path, 0o644)
writer = SqlitePersistence(path)
writer.open()
writer.claim_for_writing()
writer.record_fills([make_fill("b")])
print("fills:", len(writer.load_fills()))
writer.close()
"""


def _run_unprivileged(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c script args`` as a user whom file modes bind (root without its
    capabilities, through setpriv); skips the test where that cannot be done."""
    command = [sys.executable, "-c", script, *args]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", *command]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        pytest.skip("setpriv is not available to drop root's capabilities")


def test_a_run_refused_on_a_read_only_file_does_not_block_the_next_one(db_path: Path) -> None:
    done = _run_unprivileged(_READ_ONLY_THEN_WRITABLE, str(db_path))
    assert done.returncode == 0, done.stderr
    assert "refused: " in done.stdout and "the state file cannot be written" in done.stdout
    assert done.stdout.rstrip().endswith("fills: 2")


def test_a_folder_that_cannot_be_made_is_a_persistence_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    store = SqlitePersistence(tmp_path / "a_file" / "state" / "tradeloom.sqlite")
    with pytest.raises(PersistenceError, match="cannot create the folder of the state file"):
        store.open()


def test_claim_needs_an_open_instance(db_path: Path) -> None:
    with pytest.raises(PersistenceError, match="not open; call open"):
        SqlitePersistence(db_path).claim_for_writing()


def test_an_in_memory_database_needs_no_lock_file(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqlitePersistence(":memory:")
    store.open()
    store.claim_for_writing()
    store.record_fills([make_fill("a")])
    assert len(store.load_fills()) == 1
    store.close()
    assert list(tmp_path.iterdir()) == []


_HOLDER = """
import sys
from tradeloom_sqlite.persistence import SqlitePersistence
store = SqlitePersistence(sys.argv[1])
store.open()
store.claim_for_writing()
print("holding", flush=True)
sys.stdin.read()
"""


def test_another_process_holding_the_file_is_named_and_kill_9_frees_it(db_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "holding\n"
        store = SqlitePersistence(db_path)
        store.open()
        with pytest.raises(PersistenceError) as info:
            store.record_fills([make_fill("a")])
        assert f"in use by another tradeloom process (pid {process.pid})" in str(info.value)
    finally:
        process.kill()  # SIGKILL: no close() runs
        process.wait()
    store.record_fills([make_fill("a")])  # the kernel dropped the dead process's lock
    store.close()
    assert _raw(db_path, "SELECT count(*) FROM fills") == [(1,)]


def test_two_backtests_started_together_on_one_file_leave_consistent_state(
    tmp_path: Path, shared_data: Path
) -> None:
    state = tmp_path / "state.sqlite"
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
params = {{ path = "{shared_data / "orcl-1995-2014.txt"}", format = "yahoo", instrument = "ORCL" }}

[[strategies]]
name = "sma_cross"
params = {{ quantity = "10" }}

[executor]
name = "paper"

[persistence]
name = "sqlite"
params = {{ path = "{state}" }}
"""
    )
    tradeloom = Path(sys.executable).with_name("tradeloom")
    runs = [
        subprocess.Popen(
            [str(tradeloom), "backtest", "-c", str(config), "--out", str(tmp_path / out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out in ("o1", "o2")
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes[0] == 0 and codes[1] != 0, outputs
    refused = outputs[[run.returncode for run in runs].index(codes[1])]
    assert re.search(
        "in use by another tradeloom process|another process wrote to this state file|"
        "already holds state from an earlier run",
        refused,
    ), refused
    fills = _raw(state, "SELECT count(*) FROM fills")[0][0]
    applied = _raw(state, "SELECT json_extract(snapshot, '$.fills_applied') FROM snapshots")
    assert fills > 0 and applied == [(fills,)]
    assert _raw(state, "SELECT count(DISTINCT order_id) FROM fills") == [(fills,)]


def test_open_waits_while_another_connection_writes_a_new_file(db_path: Path) -> None:
    # Another process creating the schema of a new file holds its write lock; switching to WAL
    # is refused at once by SQLite then (no busy handler): open() waits like other statements.
    writer = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE scratch (x)")
    release = threading.Timer(0.3, writer.execute, ("ROLLBACK",))
    release.start()
    store = SqlitePersistence(db_path)
    try:
        store.open()
        assert _raw(db_path, "PRAGMA journal_mode") == [("wal",)]
        assert store.load_fills() == []
    finally:
        release.join()
        writer.close()
        store.close()


def test_processes_opening_a_new_file_together_all_open_it(tmp_path: Path) -> None:
    # The five processes of a split deployment start together on one new state file: those
    # that lose the race to create the schema must see it whole, never its tables without its
    # version (that read as "a SQLite database with tables of its own").
    for attempt in range(30):
        path = tmp_path / f"new-{attempt}.sqlite"
        assert open_together([SqlitePersistence(path) for _ in range(6)]) == []
        assert _raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_open_gives_up_after_busy_timeout(db_path: Path) -> None:
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE scratch (x)")
    try:
        with pytest.raises(PersistenceError, match="opening the database failed: database is lo"):
            SqlitePersistence(db_path, busy_timeout_seconds=0.05).open()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_saved_seq_counts_saves(db_path: Path) -> None:
    store = SqlitePersistence(db_path)
    store.open()
    store.save_snapshots([make_snapshot("a"), make_snapshot("b")])
    store.save_snapshots([make_snapshot("b")])
    store.close()
    rows = _raw(db_path, "SELECT portfolio_id, saved_seq FROM snapshots ORDER BY portfolio_id")
    assert rows == [("a", 1), ("b", 2)]


def test_built_from_configuration(tmp_path: Path) -> None:
    from decimal import Decimal

    from tradeloom.plugins import load_plugin_manager

    params = {"path": str(tmp_path / "cfg.sqlite"), "busy_timeout_seconds": Decimal("2.5")}
    store = load_plugin_manager().create("persistence", "sqlite", params)
    assert isinstance(store, SqlitePersistence)
    assert store.busy_timeout_seconds == 2.5
    store.open()
    store.record_fills([make_fill()])
    store.close()
    assert _raw(tmp_path / "cfg.sqlite", "SELECT count(*) FROM fills") == [(1,)]
    with pytest.raises(ConfigError, match="journal_mode: Input should be 'wal'"):
        load_plugin_manager().create("persistence", "sqlite", {"journal_mode": "off"})


def test_metadata_needs_no_migration_and_leaves_the_file_readable_as_before(
    db_path: Path,
) -> None:
    first = SqlitePersistence(db_path)
    first.open()
    fills = [make_fill("alpha"), make_fill("beta")]
    first.record_fills(fills)
    assert first.load_metadata() == {}  # no table yet: nothing saved
    first.close()
    # A file only read (a strategy process, an older tradeloom) gains no table.
    reader = SqlitePersistence(db_path)
    reader.open()
    assert reader.load_metadata() == {} and reader.load_fills() == fills
    reader.close()
    tables = {row[0] for row in _raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "tradeloom_metadata" not in tables
    # A table of the user's named like a plain word is no clash.
    _raw(db_path, "CREATE TABLE metadata (note TEXT)")
    writer = SqlitePersistence(db_path)
    writer.open()
    try:
        writer.save_metadata({"k": "v"})
        assert writer.load_metadata() == {"k": "v"}
    finally:
        writer.close()
    assert _raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(1,)]


def test_a_file_without_its_application_id_is_still_known_by_its_tables_with_metadata(
    db_path: Path,
) -> None:
    store = SqlitePersistence(db_path)
    store.open()
    store.save_metadata({"k": "v"})
    store.close()
    _raw(db_path, "PRAGMA application_id = 0")  # as a tool that copied the tables might leave it
    again = SqlitePersistence(db_path)
    again.open()
    try:
        assert again.load_metadata() == {"k": "v"}
    finally:
        again.close()


def test_a_busy_timeout_longer_than_sqlite_takes_waits_the_longest_it_can(db_path: Path) -> None:
    # The sqlite3 module keeps the timeout as an int of milliseconds: a longer one overflowed
    # into no wait at all, so a lock held by another process failed at once.
    assert SqlitePersistence(db_path, busy_timeout_seconds=float("inf")).busy_timeout_seconds == (
        LONGEST_BUSY_TIMEOUT_SECONDS
    )
    SqlitePersistence(db_path).open()
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        try:
            other.execute("COMMIT")
        finally:
            other.close()  # the lock goes with the connection, whatever happened

    releaser = threading.Timer(0.5, release)
    releaser.start()
    try:
        store = SqlitePersistence(db_path, busy_timeout_seconds=3_000_000)
        store.open()
        store.record_fills([make_fill("a")])  # waited for the lock, did not fail at once
        store.close()
    finally:
        releaser.join()
    assert _raw(db_path, "SELECT count(*) FROM fills") == [(1,)]


def test_a_path_in_the_home_folder_is_expanded(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    store = SqlitePersistence("~/state.sqlite")
    store.open()
    store.close()
    assert (tmp_path / "home" / "state.sqlite").is_file()
    assert not (tmp_path / "~").exists()


def test_an_empty_path_or_a_folder_is_refused_plainly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path must name a file, got an empty path"):
        SqlitePersistence("")
    with pytest.raises(PersistenceError, match="is a folder; path must name the state file"):
        SqlitePersistence(tmp_path).open()


def test_a_tradeloom_database_missing_a_table_is_corrupt_state(filled_db: Path) -> None:
    conn = sqlite3.connect(filled_db)
    conn.execute("DROP TABLE snapshots")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptStateError, match=r"without its table\(s\) snapshots"):
        SqlitePersistence(filled_db).open()


@pytest.mark.skipif(os.name != "posix", reason="file modes as POSIX has them")
def test_the_lock_file_gets_the_state_files_mode(db_path: Path) -> None:
    # A state file shared by a group: whoever may write it may take the writer hold.
    SqlitePersistence(db_path).open()
    db_path.chmod(0o664)
    store = SqlitePersistence(db_path)
    store.open()
    store.claim_for_writing()
    store.close()
    assert store.lock_path.stat().st_mode & 0o777 == 0o664


_FOLDER_AND_LOCK_FILE = """
import os, sys
from tradeloom.errors import PersistenceError
from tradeloom.testing.persistence import make_fill
from tradeloom_sqlite.persistence import SqlitePersistence

shared, locked = sys.argv[1], sys.argv[2]
for path in (os.path.join(locked, "new.sqlite"), os.path.join(locked, "old.sqlite")):
    try:
        SqlitePersistence(path).open()
    except PersistenceError as exc:
        print("refused:", exc)
# A lock file this user cannot write (made by another user): the hold is still taken.
store = SqlitePersistence(shared)
store.open()
store.claim_for_writing()
store.record_fills([make_fill("b")])
print("fills:", len(store.load_fills()))
store.close()
"""


def test_folders_and_lock_files_this_user_cannot_write(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    old = SqlitePersistence(locked / "old.sqlite")
    old.open()
    old.record_fills([make_fill("a")])
    old.close()
    shared = tmp_path / "shared.sqlite"
    first = SqlitePersistence(shared)
    first.open()
    first.claim_for_writing()
    first.close()
    Path(f"{shared}.lock").chmod(0o444)
    locked.chmod(0o555)
    try:
        done = _run_unprivileged(_FOLDER_AND_LOCK_FILE, str(shared), str(locked))
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    refused = [line for line in done.stdout.splitlines() if line.startswith("refused: ")]
    assert refused == [
        f"refused: {locked / 'new.sqlite'}: the state file cannot be created: the folder "
        f"{locked} cannot be written by this user",
        f"refused: {locked / 'old.sqlite'}: opening the database failed: attempt to write a "
        f"readonly database: the folder {locked} cannot be written by this user, and SQLite "
        "keeps its journal (a -wal or -journal file) next to the state file",
    ]
    assert done.stdout.rstrip().endswith("fills: 1")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs as POSIX has them")
def test_a_lock_file_that_is_not_a_file_is_refused_without_blocking(db_path: Path) -> None:
    # One planted in a shared folder by another user: opening a FIFO to read would wait for
    # a writer for good.
    store = SqlitePersistence(db_path)
    store.open()
    os.mkfifo(store.lock_path)
    with pytest.raises(PersistenceError, match=r"could not open the writer lock file .*regular"):
        store.claim_for_writing()
    store.close()


def test_a_pid_left_in_the_lock_file_by_a_holder_that_is_gone_names_nobody(
    db_path: Path,
) -> None:
    holder = SqlitePersistence(db_path)
    holder.open()
    holder.claim_for_writing()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    os.pwrite(holder._hold, f"{gone}\n".encode(), 0)  # type: ignore[arg-type]
    other = SqlitePersistence(db_path)
    other.open()
    with pytest.raises(PersistenceError, match=r"is in use by another tradeloom process; two"):
        other.claim_for_writing()
    other.close()
    holder.close()


def test_a_backtest_journals_no_rejections(tmp_path: Path) -> None:
    # In one process nothing is read again, so the rejections journal (which the risk and
    # execution roles read across processes) is not written: no table, no cost.
    from tradeloom import Bar, Strategy, StrategyContext, backtest
    from tradeloom.testing import bars

    class BuysTooMuch(Strategy):
        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            ctx.buy(bar.instrument, 1000)

    db = tmp_path / "state.db"
    result = backtest(
        {
            "persistence": {"name": "sqlite", "params": {"path": str(db)}},
            "validators": [{"name": "max_position", "params": {"limit": "1"}}],
        },
        strategies={"s": BuysTooMuch()},
        events=bars("ACME", ["10", "11", "12"]),
    )
    assert len(result.rejections) == 3
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "tradeloom_rejections" not in tables
    store = SqlitePersistence(db)
    store.open()
    try:
        assert store.load_rejections() == []
    finally:
        store.close()
