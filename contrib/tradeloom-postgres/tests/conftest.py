"""Fixtures: a real PostgreSQL server for the whole session (see pg_testserver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Detailed assertion messages from the conformance suite, which lives outside this folder.
pytest.register_assert_rewrite("tradeloom.testing.persistence")

from pg_testserver import PostgresServer, start_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 with a database and a password login role."""
    yield from start_server()
