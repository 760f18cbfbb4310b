"""Stand-ins for the runtime's services, shared by the feed and executor conformance suites.

They are real implementations (an id generator, a clock), only instrumented so that a test can
see what a component did with them.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from uuid import UUID

from uuid6 import uuid7

from tradeloom.ids import derived_uuid7
from tradeloom.runtime.replay_position import NumberedIds


class RecordingIds:
    """A UUIDv7 id generator that remembers every id it minted.

    A component must take its event ids from the generator the runtime gives it, so a test can
    check that every id it sees was minted here."""

    def __init__(self) -> None:
        self.minted: set[UUID] = set()
        self._lock = threading.Lock()

    def new_id(self) -> UUID:
        new = uuid7()
        with self._lock:
            self.minted.add(new)
        return new

    def id_for(self, source: bytes, timestamp_ms: int | None) -> UUID:
        """As the stock generator: the same id for the same input (see
        :func:`tradeloom.ids.stable_id`)."""
        derived = derived_uuid7(source, timestamp_ms)
        with self._lock:
            self.minted.add(derived)
        return derived


class NumberedRecordingIds(RecordingIds):
    """Ids numbered from a base, as the runtime gives a replay whose position is kept on a
    broker: the ``n``-th id handed out is ``base + first + n`` (see
    :class:`tradeloom.runtime.replay_position.NumberedIds`)."""

    def __init__(self, base: int, first: int = 0) -> None:
        super().__init__()
        self._numbered = NumberedIds(base, first)

    def new_id(self) -> UUID:
        return self.new_ids(1)[0]

    def new_ids(self, count: int) -> list[UUID]:
        new = self._numbered.new_ids(count)
        with self._lock:
            self.minted.update(new)
        return new


class ManualClock:
    """A clock that tells the time a test sets; it never moves backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, to: datetime) -> None:
        if to > self._now:
            self._now = to


def component_logger(name: str) -> logging.Logger:
    """A logger under ``tradeloom.testing`` (pytest's caplog sees it)."""
    return logging.getLogger(f"tradeloom.testing.{name}")
