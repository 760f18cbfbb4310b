"""Replaying at the data's own pace, or a multiple of it, instead of as fast as possible."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio

from tradeloom.events import MarketEvent

#: How soon a wait of a paced replay sees that the replay was closed, in seconds.
_CLOSED_SEEN_WITHIN = 0.25


@dataclass(frozen=True)
class Pacing:
    """Hand out events as the data's timestamps are apart, ``speed`` times faster, waiting at
    most ``max_wait_seconds`` (of the wall clock) between two events."""

    speed: float
    max_wait_seconds: float | None = None

    async def paced(
        self, events: Iterator[MarketEvent], unsent: Callable[[], None] = lambda: None
    ) -> AsyncIterator[MarketEvent]:
        """``events`` on the wall clock: the first at once, each later one when its distance
        in data time from the previous one, divided by ``speed`` (and capped), has passed since
        the previous one was due. A consumer slower than that gets the events it fell behind on
        without waits, until it has caught up. Closes ``events`` when closed, and ends when
        they are closed, also during a wait. An event taken from ``events`` but not handed out
        (closed while it waited) is told to ``unsent``."""
        due = 0.0
        previous = None
        holding = False
        try:
            for event in events:
                holding = True
                ts = event.ts
                if previous is None:
                    due = anyio.current_time()
                    previous = ts
                elif ts > previous:
                    wait = (ts - previous).total_seconds() / self.speed
                    if self.max_wait_seconds is not None and wait > self.max_wait_seconds:
                        wait = self.max_wait_seconds
                    due += wait
                    previous = ts
                    if not await _waited_until(due, events):
                        return  # closed meanwhile (the feed's close())
                holding = False
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            if holding:
                unsent()


async def _waited_until(due: float, events: Iterator[MarketEvent]) -> bool:
    """Sleep until ``due`` (the event loop's clock); False if ``events`` (a generator) was
    closed meanwhile. Checked every few tenths of a second, so a close from outside the event
    loop's task is seen too."""
    while True:
        delay = due - anyio.current_time()
        if delay <= 0:
            return True
        await anyio.sleep(min(delay, _CLOSED_SEEN_WITHIN))
        if getattr(events, "gi_frame", True) is None:
            return False


def pacing(speed: Any, max_wait_seconds: Any) -> Pacing | None:
    """The :class:`Pacing` the feed's ``speed`` and ``max_wait_seconds`` ask for (None: as fast
    as possible), or a ``ValueError`` saying what is wrong with them. Numbers may come as text,
    as an environment variable gives them."""
    if speed is None:
        if max_wait_seconds is not None:
            raise ValueError(
                "max_wait_seconds caps the waits of a paced replay: give speed too "
                "(speed = 1 replays at the data's own pace)"
            )
        return None
    return Pacing(
        _positive("speed", speed, "1 replays at the data's own pace, 60 a minute a second"),
        None
        if max_wait_seconds is None
        else _positive("max_wait_seconds", max_wait_seconds, "5 waits at most 5 s"),
    )


def _positive(name: str, value: Any, example: str) -> float:
    number: float | None = None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # Decimal("sNaN"), an int past float's range
            number = None
    elif isinstance(value, str):
        try:
            number = float(Decimal(value.strip()))
        except (InvalidOperation, ValueError):  # ValueError: "sNaN"
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(
            f"{name} must be a finite number above 0 ({name} = {example}), got {value!r}"
        )
    return number
