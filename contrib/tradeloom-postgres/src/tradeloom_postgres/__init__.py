"""PostgreSQL persistence for tradeloom: the fills journal and portfolio snapshots.

Registered through the ``tradeloom`` entry point ``postgres`` (module
:mod:`tradeloom_postgres.plugin`).
"""

from tradeloom_postgres.persistence import PostgresParams, PostgresPersistence

__all__ = ["PostgresParams", "PostgresPersistence"]
