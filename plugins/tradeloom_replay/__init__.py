"""Stock ``replay`` feed: bars and ticks from CSV (or Parquet) files, streamed in time order.

Registered through the ``tradeloom`` entry point ``replay`` (module :mod:`tradeloom_replay.plugin`).
"""

from tradeloom_replay.feed import ReplayFeed, ReplayFileNotFoundError, ReplayIsADirectoryError

__all__ = ["ReplayFeed", "ReplayFileNotFoundError", "ReplayIsADirectoryError"]
