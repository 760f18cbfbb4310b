"""Reconnection delays: exponential backoff with jitter, bounded by :class:`ReconnectSettings`."""

from __future__ import annotations

import random
from collections.abc import Iterator

from tradeloom.errors import TradeloomError, describe_error
from tradeloom.settings import ReconnectSettings


class ReconnectExhausted(TradeloomError):
    """Every reconnection attempt allowed by the settings has failed."""

    def __init__(self, what: str, attempts: int, last_error: BaseException | None) -> None:
        detail = f": {describe_error(last_error)}" if last_error else ""
        super().__init__(f"{what}: gave up after {attempts} reconnection attempts{detail}")
        self.attempts = attempts
        self.last_error = last_error


def backoff_delays(
    settings: ReconnectSettings, rng: random.Random | None = None
) -> Iterator[float]:
    """Yield the delay before each reconnection attempt, in seconds.

    The n-th delay is ``min(max_delay, base_delay * 2**n)``, of which the fraction ``jitter`` is
    drawn at random, so that many clients do not reconnect in lockstep. The iterator ends after
    ``max_attempts`` delays (never when ``max_attempts`` is 0).
    """
    rng = rng or random.Random()
    attempt = 0
    ceiling = min(settings.max_delay_seconds, settings.base_delay_seconds)
    while settings.max_attempts == 0 or attempt < settings.max_attempts:
        if attempt:
            # Doubling a float, capped: never grows past max_delay, however many attempts.
            ceiling = min(settings.max_delay_seconds, ceiling * 2)
        fixed = ceiling * (1 - settings.jitter)
        yield fixed + rng.uniform(0, ceiling - fixed)
        attempt += 1
