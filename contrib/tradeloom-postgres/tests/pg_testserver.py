"""A throwaway PostgreSQL server for the tests, started from the local server binaries.

:func:`start_server` (behind the session fixture ``postgres_server``) runs ``initdb`` into a
temporary folder, starts the server on a free port of 127.0.0.1 (Unix sockets in the same
folder), creates a database and a login role with a password, and stops the server at the end.
As root it runs the server as the ``postgres`` system user: PostgreSQL refuses to run as root.

Binaries are looked up in ``$PG_BINDIR`` when it is set (only there), else on
``PATH``, then in ``/usr/lib/postgresql/<version>/bin`` (Debian, newest first). Without them
the tests are skipped with the reason, except when ``CI=true``: there they fail, so CI never
skips silently.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class PostgresServer:
    """Where the test server listens and how to log in."""

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    socket_dir: Path
    admin_user: str

    def params(self, **extra: Any) -> dict[str, Any]:
        """Parameters for :class:`PostgresPersistence` (TCP with a password)."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
            "sslmode": "disable",
            **extra,
        }

    def admin_connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        """A superuser connection through the Unix socket (trusted locally)."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.admin_user,
            dbname=dbname or self.dbname,
            autocommit=True,
        )


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (0,)


def find_bin_dir() -> Path | None:
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):  # when set, the only place looked at
        candidates.append(Path(os.environ["PG_BINDIR"]))
        return candidates[0] if _has_server(candidates[0]) else None
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    for folder in candidates:
        if _has_server(folder):
            return folder
    return None


def _has_server(folder: Path) -> bool:
    return all((folder / program).is_file() for program in SERVER_PROGRAMS)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Runner:
    """Runs server programs, as the ``postgres`` system user when we are root."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.as_user: str | None = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root, and no 'postgres' system user to run the server as")
                raise  # _unavailable always raises; this keeps type checkers informed
            self.as_user = account.pw_name
            os.chown(base, account.pw_uid, account.pw_gid)

    def run(self, *command: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.as_user is not None:
            kwargs = {"user": self.as_user, "group": self.as_user, "extra_groups": []}
        return subprocess.run(
            [str(part) for part in command],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
            **kwargs,
        )


def start_server() -> Iterator[PostgresServer]:
    """Start a server, yield where it listens, stop it and delete its files."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
            "$PG_BINDIR (when set) or on PATH or in /usr/lib/postgresql/*/bin; "
            "install them with: apt-get install -y postgresql"
        )
    assert bin_dir is not None
    base = Path(tempfile.mkdtemp(prefix="tl-pg-"))
    runner = _Runner(base)
    data = base / "data"
    log = base / "server.log"
    admin = "tl_admin"
    (base / "admin.pw").write_text(secrets.token_hex(16))
    if runner.as_user is not None:
        shutil.chown(base / "admin.pw", runner.as_user, runner.as_user)
    started = False
    try:
        done = runner.run(
            bin_dir / "initdb",
            "-D", data,
            "-U", admin,
            "--pwfile", base / "admin.pw",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
        port = 0
        for _attempt in range(3):  # a free port can be taken between probe and start
            port = _free_port()
            options = (
                f"-c port={port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories='{base}' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
            )
            done = runner.run(
                bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"
            )
            if done.returncode == 0:
                started = True
                break
        if not started:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{server_log}", pytrace=False
            )
        server = PostgresServer(
            host="127.0.0.1",
            port=port,
            dbname="tradeloom",
            user="tradeloom",
            password="pw-" + secrets.token_hex(12),
            socket_dir=base,
            admin_user=admin,
        )
        with server.admin_connect(dbname="postgres") as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(server.user), sql.Literal(server.password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(server.dbname), sql.Identifier(server.user)
                )
            )
        yield server
    finally:
        if started:
            runner.run(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
