"""Signals that wait for an instrument's first price, within bounds."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from tradeloom.events import Signal


class PriceWait:
    """Holds signals for instruments without a price yet.

    ``release(instrument)`` hands back, in arrival order, what waited for that instrument. A
    signal that waits longer than ``max_wait`` or arrives when ``max_signals`` already wait for
    the instrument is refused through ``reject(signal, reason)``: nothing is dropped silently.
    """

    def __init__(
        self,
        *,
        max_signals: int,
        max_wait_seconds: float,
        reject: Callable[[Signal, str], None],
    ) -> None:
        self.max_signals = max_signals
        self.max_wait = timedelta(seconds=max_wait_seconds)
        self._reject = reject
        #: What waits, per instrument (empty when nothing does: cheap to test per event).
        self.by_instrument: dict[str, deque[tuple[datetime, Signal]]] = {}

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.by_instrument.values())

    def __bool__(self) -> bool:
        return bool(self.by_instrument)

    def hold(self, signal: Signal, now: datetime) -> None:
        queue = self.by_instrument.setdefault(signal.instrument, deque())
        if len(queue) >= self.max_signals:
            if not queue:
                del self.by_instrument[signal.instrument]
            self._reject(
                signal,
                f"no price for {signal.instrument} yet and {self.max_signals} signals already "
                "wait for one (pending.max_signals)",
            )
            return
        queue.append((now, signal))

    def withdraw(self, signal: Signal) -> bool:
        """Take ``signal`` out of the wait (it was cancelled); False if it does not wait."""
        queue = self.by_instrument.get(signal.instrument)
        if not queue:
            return False
        for entry in queue:
            if entry[1].event_id == signal.event_id:
                queue.remove(entry)
                if not queue:
                    del self.by_instrument[signal.instrument]
                return True
        return False

    def ids(self) -> set[UUID]:
        """The ids of the signals waiting."""
        return {signal.event_id for queue in self.by_instrument.values() for _, signal in queue}

    def take(self, moving: Callable[[str], bool]) -> list[Signal]:
        """Take out, without a verdict, what waits for the instruments ``moving`` names."""
        taken: list[Signal] = []
        for instrument in [name for name in self.by_instrument if moving(name)]:
            taken.extend(signal for _, signal in self.by_instrument.pop(instrument))
        return taken

    def release(self, instrument: str) -> list[Signal]:
        queue = self.by_instrument.pop(instrument, None)
        return [signal for _, signal in queue] if queue else []

    def expire(self, now: datetime) -> None:
        for instrument in list(self.by_instrument):
            queue = self.by_instrument[instrument]
            while queue and now - queue[0][0] > self.max_wait:
                _, signal = queue.popleft()
                self._reject(
                    signal,
                    f"no price for {instrument} within {self.max_wait.total_seconds():g}s "
                    "(pending.max_wait_seconds)",
                )
            if not queue:
                del self.by_instrument[instrument]

    def reject_all(self, reason: str) -> None:
        for instrument in list(self.by_instrument):
            for _, signal in self.by_instrument.pop(instrument):
                self._reject(signal, reason.format(instrument=instrument))
