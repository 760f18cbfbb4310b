"""Remembering recently seen event ids, so a redelivered event changes nothing."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID


class RecentIds:
    """A bounded set of ids: the oldest are forgotten once ``capacity`` is reached."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[UUID, None] = OrderedDict()

    def seen(self, event_id: UUID) -> bool:
        """Return True if ``event_id`` was seen before; otherwise remember it."""
        if event_id in self._ids:
            return True
        if self.capacity:
            self._ids[event_id] = None
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
