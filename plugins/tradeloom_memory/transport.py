"""The in-process transport: deterministic, synchronous delivery."""

from __future__ import annotations

from collections.abc import Sequence

from tradeloom.events import Event
from tradeloom.runtime.transport import CommitBarrier, Handler, Transport


class MemoryTransport(Transport):
    """Delivers each event to every subscribed handler before ``publish`` returns.

    Delivery is depth-first: whatever a handler publishes is delivered before the next
    handler of the original event runs. Handlers are called in subscription order, so a
    fill made on a price reaches the strategies before the strategies see that price.
    Nothing is copied, encoded or redelivered.

    It commits nothing itself, but a feed that does (one reading a broker) asks
    :meth:`delivered` before it commits what it read: the commit barriers (the portfolio's
    journal) say whether the effects of everything delivered so far are durable.
    """

    synchronous = True
    may_redeliver = False

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._barriers: list[CommitBarrier] = []

    def subscribe(self, role: str, topics: Sequence[str], handler: Handler) -> None:
        for topic in topics:
            self._handlers.setdefault(topic, []).append(handler)

    def local_subscribers(self, topic: str) -> Sequence[Handler]:
        return self._handlers.setdefault(topic, [])  # the live list

    def publish(self, topic: str, event: Event, key: str | None = None) -> None:
        handlers = self._handlers.get(topic)
        if handlers:
            for handler in handlers:
                handler(topic, event)

    def add_commit_barrier(self, role: str, barrier: CommitBarrier) -> None:
        self._barriers.append(barrier)

    async def delivered(self) -> bool:
        """Every event published so far was handled before ``publish`` returned: True when
        their effects are durable too (every commit barrier passed), else False (a feed then
        leaves what it read uncommitted, to be read again after a restart)."""
        for barrier in self._barriers:
            if not await barrier():
                return False
        return True
