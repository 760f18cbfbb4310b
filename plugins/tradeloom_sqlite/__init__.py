"""Stock ``sqlite`` persistence: fills journal and portfolio snapshots in one SQLite file.

Registered through the ``tradeloom`` entry point ``sqlite`` (module :mod:`tradeloom_sqlite.plugin`).
"""

from tradeloom_sqlite.persistence import SqlitePersistence

__all__ = ["SqlitePersistence"]
