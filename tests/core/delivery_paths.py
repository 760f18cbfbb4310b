"""The three ways a backtest hands market events to the stages, for tests that must hold on
each: the generated block loop (a plain feed), publish() per event (a plain feed while an
event observer is registered), and the async loop (an async feed)."""

from __future__ import annotations

from typing import Any

from tradeloom import hookimpl


class Observer:
    """Makes market events go through publish() rather than the generated loop."""

    @hookimpl
    def tradeloom_event_observed(self, stage: str, direction: str, event: object) -> None:
        pass


def delivery_paths(plain_feed: type, async_feed: type) -> dict[str, tuple[type, list[Any]]]:
    """``{path: (feed class, plugins)}`` for ``pytest.mark.parametrize``."""
    return {
        "block": (plain_feed, []),
        "publish": (plain_feed, [Observer()]),
        "async": (async_feed, []),
    }
