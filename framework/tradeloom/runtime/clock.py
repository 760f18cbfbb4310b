"""Clocks. A backtest runs on a simulated clock moved by the data; a live run on the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

EARLIEST = datetime.min.replace(tzinfo=UTC)
"""A simulated clock's time before the first event: earlier than any data (1960's too)."""


class SimulatedClock:
    """Time as the replayed data says: it only moves forward, to each event's timestamp.
    Before the first event it reads :data:`EARLIEST`, so that no data is taken for older than
    the start."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or EARLIEST

    def now(self) -> datetime:
        return self._now

    def advance(self, to: datetime) -> None:
        if to > self._now:
            self._now = to


class WallClock:
    """The system clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def advance(self, to: datetime) -> None:
        """Wall time moves by itself; data timestamps do not move it."""
