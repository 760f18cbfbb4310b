"""Naive timestamps in a zone whose clocks change: a local time the clocks skipped is bad
input that says so, and the hour that comes twice when they go back is read in the order the
rows give it (its first pass, then its second), in the row and the block parsing paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tradeloom.testing.feeds import collect_events
from tradeloom_replay import ReplayFeed

NEW_YORK = ZoneInfo("America/New_York")
FALL_BACK = datetime(2024, 11, 3, 4, tzinfo=UTC)  # 00:00 in New York; 01:00-02:00 comes twice


def local_text(instant: datetime) -> str:
    return instant.astimezone(NEW_YORK).replace(tzinfo=None).isoformat()


def new_york(path: Path, **columns: str) -> ReplayFeed:
    """A replay of ``path`` with naive New York times, of instrument X unless a column names
    the instrument."""
    params: dict[str, Any] = {"bar_interval": "1h"} if "close" in columns else {}
    if "instrument" not in columns:
        params["instrument"] = "X"
    return ReplayFeed(path=path, timezone="America/New_York", columns=columns, **params)


@pytest.mark.parametrize("step_seconds", [600, 1])  # one block; many, some of one pass only
def test_the_hour_that_comes_twice_is_read_in_the_rows_order(write, step_seconds: int) -> None:
    instants = [
        FALL_BACK + timedelta(seconds=n * step_seconds) for n in range(5 * 3600 // step_seconds)
    ]
    rows = "".join(f"{local_text(t)},{100 + n % 50}\n" for n, t in enumerate(instants))
    path = write("ticks.csv", "time,px\n" + rows)
    run = collect_events(new_york(path, ts="time", last_price="px"))
    assert run.dead_letters == []
    assert [event.ts for event in run.events] == instants


def test_hourly_bars_over_the_hour_that_comes_twice(write) -> None:
    starts = [FALL_BACK + timedelta(hours=n) for n in range(6)]
    rows = "".join(f"{local_text(t)},1,2,1,2,5\n" for t in starts)
    path = write("bars.csv", "Date,Open,High,Low,Close,Volume\n" + rows)
    run = collect_events(
        new_york(
            path, ts="Date", open="Open", high="High", low="Low", close="Close", volume="Volume"
        )
    )
    assert run.dead_letters == []  # the second 01:00 bar was refused as a duplicate
    assert [bar.start for bar in run.events] == starts


def test_a_local_time_the_clocks_skipped_is_bad_input_that_says_so(write) -> None:
    path = write(
        "spring.csv",
        "time,px\n2024-03-10T01:59:00,1\n2024-03-10T02:30:00,2\n2024-03-10T03:01:00,3\n",
    )
    run = collect_events(new_york(path, ts="time", last_price="px"))
    assert [event.ts.isoformat() for event in run.events] == [
        "2024-03-10T06:59:00+00:00",
        "2024-03-10T07:01:00+00:00",  # 03:01 EDT: no longer refused as out of order
    ]
    (letter,) = run.dead_letters
    assert letter.location == "line 3"
    assert letter.reason == (
        "column 'time': '2024-03-10T02:30:00' does not exist in America/New_York (the clocks "
        "went forward over it): is the zone right?"
    )


def test_the_second_pass_is_judged_across_the_instruments_of_a_file(write) -> None:
    # B has no row in the first pass of the repeated hour: its 01:30 follows A's second-pass
    # 01:05 in the file, so it is the second 01:30 too (the file is in time order).
    path = write(
        "two.csv",
        "time,sym,px\n"
        "2024-11-03T00:50:00,A,1\n"
        "2024-11-03T00:55:00,B,1\n"
        "2024-11-03T01:10:00,A,2\n"
        "2024-11-03T01:05:00,A,3\n"
        "2024-11-03T01:30:00,B,4\n"
        "2024-11-03T02:10:00,A,5\n",
    )
    run = collect_events(new_york(path, ts="time", instrument="sym", last_price="px"))
    assert run.dead_letters == []
    times = [(event.instrument, event.ts.strftime("%H:%M")) for event in run.events]
    assert times == [
        ("A", "04:50"),
        ("B", "04:55"),
        ("A", "05:10"),
        ("A", "06:05"),
        ("B", "06:30"),
        ("A", "07:10"),
    ]


def test_a_day_whose_midnight_the_clocks_skip_is_read(write) -> None:
    # Sao Paulo went forward at midnight until 2019: 2018-11-04 began at 01:00.
    path = write(
        "daily.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2018-11-02,10,11,9,10,10,100\n2018-11-04,10,11,9,10,10,100\n",
    )
    feed = ReplayFeed(path=path, format="yahoo", instrument="X", timezone="America/Sao_Paulo")
    run = collect_events(feed)
    assert run.dead_letters == []
    assert [bar.start.isoformat() for bar in run.events] == [
        "2018-11-02T03:00:00+00:00",
        "2018-11-04T03:00:00+00:00",
    ]


@pytest.mark.parametrize("minutes", [60, 30, 20])
def test_bars_with_start_and_end_columns_over_the_hour_that_comes_twice(
    write, minutes: int
) -> None:
    # Written by a New York wall clock: the hourly bar 01:00 EDT - 01:00 EST reads
    # "01:00,01:00", the half-hour one 01:30 EDT - 01:00 EST "01:30,01:00".
    step = timedelta(minutes=minutes)
    starts = [FALL_BACK + n * step for n in range(5 * 60 // minutes)]
    rows = "".join(f"{local_text(t)},{local_text(t + step)},1,2,1,2\n" for t in starts)
    path = write("bars.csv", "s,e,o,h,l,c\n" + rows)
    feed = ReplayFeed(
        path=path,
        instrument="X",
        timezone="America/New_York",
        columns={"start": "s", "end": "e", "open": "o", "high": "h", "low": "l", "close": "c"},
    )
    run = collect_events(feed)
    assert run.dead_letters == []
    assert [(bar.start, bar.end) for bar in run.events] == [(t, t + step) for t in starts]


def test_empty_bars_with_start_and_end_columns_stay_empty_in_the_hour_that_comes_twice(
    write,
) -> None:
    path = write(
        "bars.csv",
        "s,e,o,h,l,c\n"
        "2024-11-03T00:30:00,2024-11-03T00:30:00,1,1,1,1\n"
        "2024-11-03T01:00:00,2024-11-03T01:00:00,1,1,1,1\n"
        "2024-11-03T01:30:00,2024-11-03T01:30:00,1,1,1,1\n"
        "2024-11-03T01:00:00,2024-11-03T01:00:00,1,1,1,1\n",  # the second 01:00
    )
    feed = ReplayFeed(
        path=path,
        instrument="X",
        timezone="America/New_York",
        columns={"start": "s", "end": "e", "open": "o", "high": "h", "low": "l", "close": "c"},
    )
    run = collect_events(feed)
    assert run.dead_letters == []
    assert [(bar.start.strftime("%H:%M"), bar.end.strftime("%H:%M")) for bar in run.events] == [
        ("04:30", "04:30"),
        ("05:00", "05:00"),
        ("05:30", "05:30"),
        ("06:00", "06:00"),
    ]


def test_hourly_bars_by_their_start_column_over_the_hour_that_comes_twice(write) -> None:
    starts = [FALL_BACK + timedelta(hours=n) for n in range(6)]
    rows = "".join(f"{local_text(t)},1,2,1,2\n" for t in starts)
    path = write("bars.csv", "s,o,h,l,c\n" + rows)
    run = collect_events(new_york(path, start="s", open="o", high="h", low="l", close="c"))
    assert run.dead_letters == []
    assert [bar.start for bar in run.events] == starts
