"""What the resume tests share: a backtest of the ORCL daily bars with sqlite state, an async
feed of given events, and a stop at a market time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeloom import hookimpl
from tradeloom.components import Feed


def orcl_config(data: Path, state: Path) -> dict[str, Any]:
    """sma_cross on the ORCL bars of ``data``, paper trader at the next open with 10 bps,
    state in the sqlite file ``state``."""
    return {
        "feed": {
            "name": "replay",
            "params": {"path": str(data), "format": "yahoo", "instrument": "ORCL"},
        },
        "strategies": [{"name": "sma_cross", "params": {"quantity": "10"}}],
        "executor": {"name": "paper", "params": {"fill_at": "next", "commission_bps": "10"}},
        "persistence": {"name": "sqlite", "params": {"path": str(state)}},
    }


class AsyncEvents(Feed):
    """Hands out the given events from an async iterator, as a live-style feed does."""

    def __init__(self, events: list[Any]) -> None:
        self._events = events

    async def events(self, ctx: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for event in self._events:
            yield event


class StopAt:
    """Stops the run at the given market time (a Ctrl-C there, as a test can make one)."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.pipeline: Any = None

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    @hookimpl
    def tradeloom_event_observed(self, stage: str, direction: str, event: Any) -> None:
        if stage == "feed" and event.ts == self.at:
            self.pipeline.stop()
