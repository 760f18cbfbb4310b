"""Remembering recently seen event ids, so a redelivered event changes nothing."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID


class RecentIds:
    """A bounded set of ids: the oldest are forgotten once ``capacity`` is reached.

    Ids are kept as ints: hashing a ``UUID`` runs Python code, hashing its int does not.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[int, None] = OrderedDict()

    def seen(self, event_id: UUID) -> bool:
        """Return True if ``event_id`` was seen before; otherwise remember it."""
        key = event_id.int
        ids = self._ids
        if key in ids:
            return True
        if self.capacity:
            ids[key] = None
            if len(ids) > self.capacity:
                ids.popitem(last=False)
        return False

    def add(self, event_id: UUID) -> None:
        """Remember ``event_id``."""
        self.seen(event_id)

    def discard(self, event_id: UUID) -> None:
        """Forget ``event_id``: seen again, it is new."""
        self._ids.pop(event_id.int, None)

    def __contains__(self, event_id: UUID) -> bool:
        return event_id.int in self._ids

    def __len__(self) -> int:
        return len(self._ids)
