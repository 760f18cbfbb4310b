"""Signals that wait for an instrument's first price, within bounds."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from tradeloom.events import Signal


class PriceWait:
    """Holds signals for instruments without a price yet.

    ``next_released(instrument)`` hands back, one at a time and in order, what waits for that
    instrument. A signal that waits longer than ``max_wait`` or arrives when ``max_signals``
    already wait for the instrument is refused through ``reject(signal, reason)``: nothing is
    dropped silently.

    Each signal is taken out of the live queue just before its verdict: the verdict runs the
    strategies' callbacks at once in one process, and those may cancel a signal still waiting
    (``withdraw``) or send one more (``hold``), which must find the queue as it is.
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
        #: What waits, per instrument, by the time each began to wait (empty when nothing
        #: does: cheap to test per event).
        self.by_instrument: dict[str, deque[tuple[datetime, Signal]]] = {}

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.by_instrument.values())

    def __bool__(self) -> bool:
        return bool(self.by_instrument)

    def hold(self, signal: Signal, since: datetime) -> None:
        """Let ``signal`` wait, counting its wait from ``since``."""
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
        if queue and since < queue[-1][0]:
            # Waiting since before the last one (read again after a restart): in time order,
            # so the oldest wait is always first.
            index = len(queue)
            while index and queue[index - 1][0] > since:
                index -= 1
            queue.insert(index, (since, signal))
        else:
            queue.append((since, signal))

    def put_behind(self, signal: Signal, now: datetime) -> None:
        """Queue ``signal`` behind those waiting for its instrument, which are being released
        (see ``next_released``): it is priced, so no bound applies to it."""
        self.by_instrument[signal.instrument].append((now, signal))

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

    def signals(self) -> list[Signal]:
        """The signals waiting, left waiting: those of one instrument in the order they wait."""
        return [signal for queue in self.by_instrument.values() for _, signal in queue]

    def take(self, moving: Callable[[str], bool]) -> list[Signal]:
        """Take out, without a verdict, what waits for the instruments ``moving`` names."""
        taken: list[Signal] = []
        for instrument in [name for name in self.by_instrument if moving(name)]:
            taken.extend(signal for _, signal in self.by_instrument.pop(instrument))
        return taken

    def next_released(self, instrument: str) -> Signal | None:
        """The first signal waiting for ``instrument``, taken out; None when none waits."""
        queue = self.by_instrument.get(instrument)
        if not queue:
            return None
        _, signal = queue.popleft()
        if not queue:
            del self.by_instrument[instrument]
        return signal

    def expire(self, now: datetime) -> None:
        for instrument in list(self.by_instrument):
            while True:
                queue = self.by_instrument.get(instrument)
                if not queue or now - queue[0][0] <= self.max_wait:
                    break
                _, signal = queue.popleft()
                if not queue:
                    del self.by_instrument[instrument]
                self._reject(
                    signal,
                    f"no price for {instrument} within {self.max_wait.total_seconds():g}s "
                    "(pending.max_wait_seconds)",
                )

    def reject_all(self, reason: str) -> None:
        """Refuse what waits now, with ``reason`` (``{instrument}`` is filled in). What the
        callbacks send meanwhile waits: the caller settles it in its next round."""
        for instrument, queue in list(self.by_instrument.items()):
            for entry in list(queue):
                live = self.by_instrument.get(instrument)
                if live is None or not any(held is entry for held in live):
                    continue  # cancelled by the callbacks of a rejection before it
                live.remove(entry)
                if not live:
                    del self.by_instrument[instrument]
                self._reject(entry[1], reason.format(instrument=instrument))
