"""Registers the stock ``replay`` feed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_replay.feed import ReplayFeed


@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    return {"replay": ReplayFeed}
