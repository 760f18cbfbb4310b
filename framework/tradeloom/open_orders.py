"""Signals sent and not yet filled or rejected, summed by what they are for."""

from __future__ import annotations

from collections.abc import Hashable
from decimal import Decimal
from typing import Generic, TypeVar
from uuid import UUID

from tradeloom.events import Side, Signal

Key = TypeVar("Key", bound=Hashable)

_ZERO = Decimal(0)


class OpenOrders(Generic[Key]):
    """The signed quantity (buys add, sells subtract) of the signals sent for each key (an
    instrument, say) whose fill or rejection has not come back yet.

    A signal is closed once: a fill or rejection delivered again changes nothing, and so does
    one of a signal that was never added here.
    """

    def __init__(self) -> None:
        # By the signal id's int: hashing a UUID runs Python code, hashing its int does not.
        self._signals: dict[int, tuple[Key, Decimal]] = {}
        self._quantities: dict[Key, Decimal] = {}

    def add(self, key: Key, signal: Signal) -> None:
        signed = signal.quantity if signal.side is Side.BUY else -signal.quantity
        self._signals[signal.event_id.int] = (key, signed)
        self._quantities[key] = self._quantities.get(key, _ZERO) + signed

    def close(self, signal_id: UUID) -> None:
        found = self._signals.pop(signal_id.int, None)
        if found is None:
            return
        key, signed = found
        # The sum may be zero while other signals are open (a buy and a sell): it is then
        # not stored, so read it with its default.
        remaining = self._quantities.get(key, _ZERO) - signed
        if remaining:
            self._quantities[key] = remaining
        else:
            self._quantities.pop(key, None)

    def quantity(self, key: Key) -> Decimal:
        return self._quantities.get(key, _ZERO)

    def __len__(self) -> int:
        return len(self._signals)
