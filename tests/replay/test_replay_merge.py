"""Several files replayed as one stream, merged in timestamp order."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tradeloom_replay import ReplayFeed

D = Decimal
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def test_paths_mapping_merges_instruments_by_time(write, context) -> None:
    a = write("a.csv", HEADER + "2024-01-02,1,1,1,1,1,1\n2024-01-04,2,2,2,2,2,1\n")
    b = write(
        "b.csv", HEADER + "2024-01-01,5,5,5,5,5,1\n2024-01-03,6,6,6,6,6,1\n2024-01-05,7,7,7,7,7,1\n"
    )
    feed = ReplayFeed(paths={"AAA": str(a), "BBB": str(b)}, format="yahoo")
    bars = list(feed.events(context.feed))
    assert [(bar.instrument, bar.start.day) for bar in bars] == [
        ("BBB", 1),
        ("AAA", 2),
        ("BBB", 3),
        ("AAA", 4),
        ("BBB", 5),
    ]
    assert feed.rows_read == 5
    # Event ids are minted in emitted order, so they sort like the stream.
    assert [bar.event_id for bar in bars] == sorted(bar.event_id for bar in bars)


def test_real_files_merge_into_one_ordered_stream(data_dir, context) -> None:
    feed = ReplayFeed(
        paths={
            "ORCL": data_dir / "orcl-1995-2014.txt",
            "NVDA": data_dir / "nvda-1999-2014.txt",
            "YHOO": data_dir / "yhoo-1996-2014.txt",
        },
        format="yahoo",
    )
    bars = list(feed.events(context.feed))
    assert len(bars) == 5036 + 4012 + 4713
    assert [bar.ts for bar in bars] == sorted(bar.ts for bar in bars)
    by_instrument: dict[str, int] = {}
    for bar in bars:
        by_instrument[bar.instrument] = by_instrument.get(bar.instrument, 0) + 1
    assert by_instrument == {"ORCL": 5036, "NVDA": 4012, "YHOO": 4713}
    first_nvda = next(bar for bar in bars if bar.instrument == "NVDA")
    assert first_nvda.start == datetime(1999, 1, 22, tzinfo=UTC)
    assert first_nvda.open == D("1.750000")


def test_equal_timestamps_keep_the_order_files_were_given(write, context) -> None:
    first = write("1.csv", "t,p\n2024-01-01T00:00:00,1\n2024-01-01T00:00:01,1\n")
    second = write("2.csv", "t,p\n2024-01-01T00:00:00,2\n2024-01-01T00:00:01,2\n")
    columns = {"ts": "t", "last_price": "p"}
    forward = ReplayFeed(paths=[first, second], instrument="X", columns=columns)
    backward = ReplayFeed(path=[second, first], instrument="X", columns=columns)
    assert [t.last_price for t in forward.events(context.feed)] == [D(1), D(2), D(1), D(2)]
    assert [t.last_price for t in backward.events(context.feed)] == [D(2), D(1), D(2), D(1)]


def test_instrument_column_files_and_bad_rows_in_a_merge(write, context) -> None:
    one = write("one.csv", "s,t,p\nA,2024-01-01T00:00:00,1\nA,2024-01-01T00:00:02,bad\n")
    two = write("two.csv", "s,t,p\nB,2024-01-01T00:00:01,2\nB,2024-01-01T00:00:03,3\n")
    feed = ReplayFeed(path=[one, two], columns={"instrument": "s", "ts": "t", "last_price": "p"})
    ticks = list(feed.events(context.feed))
    assert [(t.instrument, t.last_price) for t in ticks] == [("A", D(1)), ("B", D(2)), ("B", D(3))]
    (letter,) = context.dead_letters
    assert (letter.source, letter.location) == (str(one), "line 3")
    assert feed.rows_read == 4 and feed.bad_rows == 1
