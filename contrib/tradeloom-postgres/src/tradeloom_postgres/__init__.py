"""PostgreSQL persistence for tradeloom: the fills journal and portfolio snapshots.

Registered through the ``tradeloom`` entry point ``postgres`` (module
:mod:`tradeloom_postgres.plugin`). The names below are imported when first used, so loading
the plugin (which every tradeloom process does) does not import psycopg.
"""

from tradeloom.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "PostgresParams": "tradeloom_postgres.persistence",
        "PostgresPersistence": "tradeloom_postgres.persistence",
    },
)
