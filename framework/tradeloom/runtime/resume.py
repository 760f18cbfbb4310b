"""Resuming a backtest: the market events the stored state already holds are skipped.

A backtest's stored state (snapshots and fills) carries simulated times: everything up to its
latest time was processed. A resumed backtest skips the events at or before that time, so no
fill is counted twice, and each block of a run ends with the rest of its last time's events
(:func:`rest_of_time`), so that a stop falls between two times.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

from tradeloom.events import MarketEvent
from tradeloom.runtime.results import RunResult


class ResumePoint:
    """Skips the events at or before ``result.resumed_after``, counting them in
    ``result.skipped_events``. Every event is judged: feeds are in time order per instrument
    only."""

    def __init__(self, result: RunResult, logger: logging.Logger) -> None:
        if result.resumed_after is None:
            raise ValueError("the result has no resume point")
        self.after: datetime = result.resumed_after
        self.result = result
        self.logger = logger
        self.skipped_instruments: set[str] = set()
        """The instruments of the skipped events: they were seen, before the resume point."""

    def already_stored(self, event: MarketEvent) -> bool:
        if event.ts > self.after:
            return False
        self.result.skipped_events += 1
        self.skipped_instruments.add(event.instrument)
        return True

    def events(self, events: Iterator[MarketEvent]) -> Iterator[MarketEvent]:
        already_stored = self.already_stored
        passed = 0
        for event in events:
            if not already_stored(event):
                passed += 1
                yield event
        self._log(passed)

    async def events_async(self, events: AsyncIterator[MarketEvent]) -> AsyncIterator[MarketEvent]:
        already_stored = self.already_stored
        passed = 0
        async for event in events:
            if not already_stored(event):
                passed += 1
                yield event
        self._log(passed)

    def _log(self, passed: int) -> None:
        """At the end of the feed: what was skipped, or that all of it was."""
        skipped = self.result.skipped_events
        if passed or not skipped:
            self.logger.info(
                "resumed after %s, the latest time in the stored state: skipped %d market "
                "event(s) at or before it",
                self.after.isoformat(),
                skipped,
            )
            return
        self.logger.warning(
            "resumed after %s, the latest time in the stored state: all %d market events of "
            "the feed are at or before it, so there was nothing new to backtest (state "
            "written by a live run has wall-clock times: continue it with tradeloom run)",
            self.after.isoformat(),
            skipped,
        )


def rest_of_time(
    source: Iterator[MarketEvent], now: datetime
) -> tuple[list[MarketEvent], list[MarketEvent]]:
    """The events read from ``source`` while they are stamped ``now``; and the first one that
    is not, read ahead (none when ``source`` ended)."""
    rest: list[MarketEvent] = []
    for event in source:
        if event.ts != now:
            return rest, [event]
        rest.append(event)
    return rest, []
