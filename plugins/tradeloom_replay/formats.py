"""File layouts the replay feed understands: the presets and the fields of a custom mapping."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

Kind = Literal["bar", "tick"]
BarTimestamp = Literal["start", "end"]

FORMATS = ("yahoo", "minute", "ticks", "bidask", "custom")

TIME_FIELDS = frozenset({"ts", "date", "time", "start", "end"})
"""Fields that carry a row's time."""

TICK_FIELDS = frozenset({"last_price", "last_quantity", "bid", "ask", "volume"})
BAR_FIELDS = frozenset({"open", "high", "low", "close", "volume", "adj_close"})
COMMON_FIELDS = frozenset({"instrument"})


@dataclass(frozen=True)
class Preset:
    """A known file layout: which column holds which field, and how to read its time."""

    kind: Kind
    columns: dict[str, str | int]
    #: Number of fields every row must have, when the layout fixes it. Layouts that name their
    #: columns take it from the header instead.
    row_width: int | None = None
    timestamp_format: str | None = None
    bar_interval: timedelta | None = None
    bar_timestamp: BarTimestamp = "start"
    #: Names shown in error messages for columns addressed by position.
    labels: dict[int, str] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # Yahoo Finance daily history: one bar per trading day, dated by the session's day.
    "yahoo": Preset(
        kind="bar",
        columns={
            "date": "Date",
            "open": "Open",
            "high": "High",
            "low": "Low",
            "close": "Close",
            "adj_close": "Adj Close",
            "volume": "Volume",
        },
        bar_interval=timedelta(days=1),
        bar_timestamp="start",
    ),
    # One-minute bars stamped with the minute they END at: a day's first bar is 09:01 and its
    # last 22:00, i.e. the 09:00-22:00 session. The header names seven columns ("Date,Open,...")
    # but every row has eight (date, time, ...), so this layout addresses columns by position.
    "minute": Preset(
        kind="bar",
        columns={
            "date": 0,
            "time": 1,
            "open": 2,
            "high": 3,
            "low": 4,
            "close": 5,
            "volume": 6,
        },
        row_width=8,
        bar_interval=timedelta(minutes=1),
        bar_timestamp="end",
        labels={
            0: "Date",
            1: "Time",
            2: "Open",
            3: "High",
            4: "Low",
            5: "Close",
            6: "Volume",
            7: "OpenInterest",
        },
    ),
    # Trade prints: one tick per row; every price column repeats the trade price.
    "ticks": Preset(
        kind="tick",
        columns={"ts": "Datetime", "last_price": "Close", "volume": "Volume"},
    ),
    # Quotes: last_price is the mid, (bid + ask) / 2.
    "bidask": Preset(
        kind="tick",
        columns={"ts": "TIMESTAMP", "bid": "BID", "ask": "ASK"},
        timestamp_format="%m/%d/%Y %H:%M:%S",
    ),
}

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$", re.ASCII)
_SECONDS = re.compile(r"^\s*(\d+)\s*$", re.ASCII)


def parse_interval(value: str | int | timedelta) -> timedelta:
    """Read a bar length: a timedelta, a number of seconds (also as text of digits, as an
    environment variable gives it), or text like ``"1d"``, ``"5min"``, ``"1h"``, ``"30s"``,
    ``"1w"``."""
    try:
        interval = _interval(value)
    except OverflowError:
        raise ValueError(
            f"bar_interval {value!r} is too long (at most {timedelta.max.days:,} days)"
        ) from None
    if interval <= timedelta(0):
        raise ValueError(f"bar_interval must be longer than zero, got {value!r}")
    return interval


def _interval(value: str | int | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        interval = value
    elif isinstance(value, bool):
        raise ValueError(f"bar_interval must be a duration, got {value!r}")
    elif isinstance(value, int):
        interval = timedelta(seconds=value)
    elif isinstance(value, str) and _SECONDS.match(value):
        # A number of seconds given as text: what an environment variable holds.
        interval = timedelta(seconds=int(value))
    elif isinstance(value, str):
        match = _INTERVAL.match(value.lower())
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(
                f"bar_interval {value!r} is not a duration; write e.g. '1d', '5min', '1h', '30s'"
                " or a number of seconds ('m' is ambiguous: use 'min')"
            )
        interval = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    else:
        raise ValueError(f"bar_interval must be a duration, got {value!r}")
    return interval
