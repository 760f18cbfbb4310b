"""Clocks. A backtest runs on a simulated clock moved by the data; a live run on the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime


class SimulatedClock:
    """Time as the replayed data says: it only moves forward, to each event's timestamp."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(1970, 1, 1, tzinfo=UTC)

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
