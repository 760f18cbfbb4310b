"""Clocks. A backtest runs on a simulated clock moved by the data; a live run on the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""What a simulated clock reads before the first event (what is stamped then: a signal sent in
``on_start``, the snapshot of a run that had no data)."""

_BEFORE_ANY = datetime.min.replace(tzinfo=UTC)


class SimulatedClock:
    """Time as the replayed data says: it only moves forward, to each event's timestamp. The
    first event may be of any time (1960's too): data is out of order only against an event
    before it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or _BEFORE_ANY

    def now(self) -> datetime:
        now = self._now
        return now if now is not _BEFORE_ANY else EPOCH

    def advance(self, to: datetime) -> None:
        if to > self._now:
            self._now = to

    def passed(self, ts: datetime) -> bool:
        """Whether the clock was moved past ``ts`` already: an event of that time comes out of
        time order."""
        return ts < self._now


class WallClock:
    """The system clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def advance(self, to: datetime) -> None:
        """Wall time moves by itself; data timestamps do not move it."""

    def passed(self, ts: datetime) -> bool:
        """Data of any time may come: live input is not held to time order."""
        return False
