"""tradeloom plugin registering the ``kite`` feed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl


@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    return {"kite": "tradeloom_kite.feed:KiteFeed"}
