from __future__ import annotations

import itertools
import random

from tradeloom.backoff import ReconnectExhausted, backoff_delays
from tradeloom.settings import ReconnectSettings


def test_delays_double_up_to_the_cap_and_stop_after_max_attempts() -> None:
    settings = ReconnectSettings(
        max_attempts=6, base_delay_seconds=0.5, max_delay_seconds=3, jitter=0
    )
    assert list(backoff_delays(settings)) == [0.5, 1.0, 2.0, 3, 3, 3]


def test_jitter_draws_within_the_fraction() -> None:
    settings = ReconnectSettings(
        max_attempts=200, base_delay_seconds=1, max_delay_seconds=1, jitter=0.25
    )
    delays = list(backoff_delays(settings, random.Random(3)))
    assert all(0.75 <= delay <= 1.0 for delay in delays)
    assert len(set(delays)) > 100  # really random, not one value


def test_never_giving_up_never_overflows() -> None:
    settings = ReconnectSettings(max_attempts=0, base_delay_seconds=0.5, max_delay_seconds=30)
    delays = list(itertools.islice(backoff_delays(settings), 5000))
    assert len(delays) == 5000 and max(delays) <= 30


def test_giving_up_names_the_last_error_once() -> None:
    class ClientError(Exception):
        def __str__(self) -> str:  # as some client libraries write theirs
            return "ClientError: Unable to bootstrap from [('127.0.0.1', 1)]"

    assert str(ReconnectExhausted("transport", 3, ClientError())) == (
        "transport: gave up after 3 reconnection attempts: ClientError: Unable to bootstrap "
        "from [('127.0.0.1', 1)]"
    )
    assert str(ReconnectExhausted("feed", 2, OSError("refused"))) == (
        "feed: gave up after 2 reconnection attempts: OSError: refused"
    )
