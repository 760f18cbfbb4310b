"""Signals sent and not yet filled or rejected, summed by what they are for."""

from __future__ import annotations

from collections.abc import Collection, Hashable
from decimal import Decimal
from typing import Generic, TypeVar
from uuid import UUID

from tradeloom.events import Side, Signal

Key = TypeVar("Key", bound=Hashable)

_ZERO = Decimal(0)
_BUY = Side.BUY


class OpenOrders(Generic[Key]):
    """The signed quantity (buys add, sells subtract) of the signals sent for each key (an
    instrument, say) whose fill or rejection has not come back yet.

    A signal is closed once: a fill or rejection delivered again changes nothing, and so does
    one of a signal that was never added here.
    """

    __slots__ = ("_by_key", "_open", "_signals")

    def __init__(self) -> None:
        # Per key, the open signals' signed quantities by signal id (as an int: hashing a UUID
        # runs Python code, hashing its int does not); and, per open signal, its key's dict.
        # A key's dict stays once made (there is one per instrument, or strategy and
        # instrument), so that sending and closing a signal make and drop no dict. Sums are
        # made when asked for: few signals are open at a time, and most are never asked about.
        self._by_key: dict[Key, dict[int, Decimal]] = {}
        self._open: dict[int, dict[int, Decimal]] = {}
        self._signals: dict[int, Signal] = {}  # the open signals, in the order added

    def add(self, key: Key, signal: Signal) -> None:
        signal_id = signal.event_id.int
        quantity = signal.quantity
        open_here = self._by_key.get(key)
        if open_here is None:
            open_here = self._by_key[key] = {}
        open_here[signal_id] = quantity if signal.side is _BUY else -quantity
        self._open[signal_id] = open_here
        self._signals[signal_id] = signal

    def close(self, signal_id: UUID) -> None:
        number = signal_id.int
        open_here = self._open.pop(number, None)
        if open_here is not None:
            del open_here[number]
            del self._signals[number]

    def is_open(self, signal_id: UUID) -> bool:
        return signal_id.int in self._open

    def quantity(self, key: Key) -> Decimal:
        open_here = self._by_key.get(key)
        return sum(open_here.values(), _ZERO) if open_here else _ZERO

    def quantities(self, key: Key) -> Collection[Decimal]:
        """The signed quantity of each open signal for ``key`` (empty when there is none)."""
        open_here = self._by_key.get(key)
        return open_here.values() if open_here else ()

    def signals(self) -> list[Signal]:
        """The open signals, in the order they were added."""
        return list(self._signals.values())

    def __len__(self) -> int:
        return len(self._open)
