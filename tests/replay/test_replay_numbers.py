"""Numbers in a file are read as written, or refused: never as a different number.

``Decimal()`` accepts more than a data file should hold: ``"2_5"`` (underscores between digits,
Python literal syntax) is 25 and ``"١٢"`` (Arabic-Indic digits) is 12. The feed refuses both, on
the column-at-a-time path and row by row alike, as bad rows naming the line and the column.
Whitespace around a number is ignored on both paths.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tradeloom_replay import ReplayFeed

D = Decimal


def tick_lines(prices: list[str], *, quoted_first: bool = False) -> str:
    """A tick file; one row with a quoted timestamp sends it through the csv module."""
    lines = ["ts,px,qty"]
    for second, price in enumerate(prices):
        stamp = f"2024-01-02T10:00:{second:02d}"
        if quoted_first and second == 0:
            stamp = f'"{stamp}"'
        lines.append(f"{stamp},{price},1")
    return "\n".join(lines) + "\n"


def tick_feed(path: Path, **params: object) -> ReplayFeed:
    columns = params.pop("columns", {"ts": "ts", "last_price": "px", "volume": "qty"})
    return ReplayFeed(path=path, instrument="X", columns=columns, **params)  # type: ignore[arg-type]


GARBLED = ["2_5", "1_000.5", "1__0", "\u0661\u0662", "\uff11\uff12", "12.5\u00a0"]


@pytest.mark.parametrize("garbled", GARBLED)
@pytest.mark.parametrize("quoted", [False, True], ids=["split", "csv module"])
def test_a_garbled_price_is_a_bad_row(write, context, garbled: str, quoted: bool) -> None:
    # Every other row is good, so the block would take the column path if nothing refused it.
    path = write("ticks.csv", tick_lines(["10", "11", garbled, "12"], quoted_first=quoted))
    feed = tick_feed(path)
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D(10), D(11), D(12)]
    assert feed.bad_rows == 1
    (letter,) = context.dead_letters
    assert letter.location == "line 4"
    assert letter.reason == f"column 'px': {garbled!r} is not a number"


def test_a_garbled_volume_quantity_bid_or_ask_is_a_bad_row(write, context) -> None:
    path = write(
        "quotes.csv",
        "ts,bid,ask,qty,vol\n"
        "2024-01-02T10:00:00,1.01,1.03,5,100\n"  # 2 ok
        "2024-01-02T10:00:01,1_01,1.03,5,100\n"  # 3 bid
        "2024-01-02T10:00:02,1.01,1.0_3,5,100\n"  # 4 ask
        "2024-01-02T10:00:03,1.01,1.03,5_0,100\n"  # 5 last_quantity
        "2024-01-02T10:00:04,1.01,1.03,5,1_000\n"  # 6 volume
        "2024-01-02T10:00:05,1.01,1.03,5,100\n",  # 7 ok
    )
    feed = tick_feed(
        path,
        columns={"ts": "ts", "bid": "bid", "ask": "ask", "last_quantity": "qty", "volume": "vol"},
    )
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D("1.02"), D("1.02")]
    assert [(d.location, d.reason) for d in context.dead_letters] == [
        ("line 3", "column 'bid': '1_01' is not a number"),
        ("line 4", "column 'ask': '1.0_3' is not a number"),
        ("line 5", "column 'qty': '5_0' is not a number"),
        ("line 6", "column 'vol': '1_000' is not a number"),
    ]


def test_a_garbled_bar_price_is_a_bad_row(write, context) -> None:
    path = write(
        "bars.csv",
        "ts,o,h,l,c,v\n"
        "2024-01-02T10:00:00,10,11,9,10,100\n"
        "2024-01-02T10:01:00,10,1_1,9,10,100\n"
        "2024-01-02T10:02:00,10,11,9,10,100\n",
    )
    feed = ReplayFeed(
        path=path,
        instrument="X",
        columns={"ts": "ts", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"},
        bar_interval="1min",
    )
    bars = list(feed.events(context.feed))
    assert [b.high for b in bars] == [D(11), D(11)]
    assert [(d.location, d.reason) for d in context.dead_letters] == [
        ("line 3", "column 'h': '1_1' is not a number")
    ]


def test_a_garbled_epoch_timestamp_is_a_bad_row(write, context) -> None:
    path = write("epoch.csv", "ts,px\n1704189600,10\n1_704_189_601,11\n1704189602,12\n")
    feed = tick_feed(path, columns={"ts": "ts", "last_price": "px"}, timestamp_format="unix")
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D(10), D(12)]
    (letter,) = context.dead_letters
    assert letter.location == "line 3"
    assert "cannot read '1_704_189_601' as a timestamp" in letter.reason


@pytest.mark.parametrize("stamp", ["1e999999", "1e900000", "-1e999999", "1e30"])
def test_an_epoch_timestamp_beyond_any_date_is_a_bad_row(write, context, stamp: str) -> None:
    # 1e999999 * 1e6 raised decimal.Overflow, which stopped the feed without naming the row;
    # 1e900000 took half a minute in int() before it was refused.
    path = write("epoch.csv", f"ts,px\n1704189600,10\n{stamp},11\n1704189602,12\n")
    feed = tick_feed(path, columns={"ts": "ts", "last_price": "px"}, timestamp_format="unix")
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D(10), D(12)]
    (letter,) = context.dead_letters
    assert letter.location == "line 3"
    assert f"cannot read {stamp!r} as a timestamp" in letter.reason


def test_a_garbled_price_in_a_parquet_string_column_is_a_bad_row(tmp_path, context) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "ticks.parquet"
    table = pa.table(
        {
            "ts": ["2024-01-02T10:00:00", "2024-01-02T10:00:01", "2024-01-02T10:00:02"],
            "px": ["10", "2_5", "12"],
        }
    )
    pq.write_table(table, path)
    feed = tick_feed(path, columns={"ts": "ts", "last_price": "px"})
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D(10), D(12)]
    assert [(d.location, d.reason) for d in context.dead_letters] == [
        ("row 2", "column 'px': '2_5' is not a number")
    ]


@pytest.mark.parametrize("quoted", [False, True], ids=["split", "csv module"])
def test_spaces_around_numbers_are_ignored_on_every_path(write, context, quoted: bool) -> None:
    padded = [" 12.5 ", "\t13", "14 ", "  1E+1  "]
    path = write("padded.csv", tick_lines(padded, quoted_first=quoted))
    feed = tick_feed(path)
    ticks = list(feed.events(context.feed))
    assert feed.bad_rows == 0
    assert [t.last_price for t in ticks] == [D("12.5"), D(13), D(14), D("1E+1")]


def test_a_space_inside_a_number_is_a_bad_row(write, context) -> None:
    path = write("inner.csv", tick_lines(["10", "1 000", "12"]))
    feed = tick_feed(path)
    assert [t.last_price for t in feed.events(context.feed)] == [D(10), D(12)]
    assert [d.reason for d in context.dead_letters] == ["column 'px': '1 000' is not a number"]


OUT_OF_RANGE = (
    "is out of range: a number must be below 1E+100000 and, unless zero, "
    "at least 1E-100000 in magnitude"
)


@pytest.mark.parametrize("quoted", [False, True], ids=["split", "csv module"])
def test_numbers_beyond_the_events_range_are_bad_rows(write, context, quoted: bool) -> None:
    # 1e999999 is a finite Decimal, but a position of ten of them overflows: the run failed in
    # the executor, far from the row. Zero volumes send the volume column down the path that
    # looks at every number of a block with an exponent.
    stamp = '"2024-01-02T10:00:00"' if quoted else "2024-01-02T10:00:00"
    path = write(
        "ranges.csv",
        "ts,px,qty\n"
        f"{stamp},10,1\n"  # 2 ok
        "2024-01-02T10:00:01,1e999999,1\n"  # 3 price above
        "2024-01-02T10:00:02,11,0\n"  # 4 ok
        "2024-01-02T10:00:03,12,1E-100001\n"  # 5 volume below
        "2024-01-02T10:00:04,13,1E+100000\n"  # 6 volume above
        "2024-01-02T10:00:05,1E-100001,1\n"  # 7 price below
        "2024-01-02T10:00:06,9.9E+99999,0E+999999999\n"  # 8 ok: the edge, a zero
        "2024-01-02T10:00:07,1E-100000,1E-100000\n",  # 9 ok: the other edge
    )
    feed = tick_feed(path)
    ticks = list(feed.events(context.feed))
    assert [(t.last_price, t.volume) for t in ticks] == [
        (D(10), D(1)),
        (D(11), D(0)),
        (D("9.9E+99999"), D(0)),
        (D("1E-100000"), D("1E-100000")),
    ]
    assert [(d.location, d.reason) for d in context.dead_letters] == [
        ("line 3", f"column 'px': 1E+999999 {OUT_OF_RANGE}"),
        ("line 5", f"column 'qty': 1E-100001 {OUT_OF_RANGE}"),
        ("line 6", f"column 'qty': 1E+100000 {OUT_OF_RANGE}"),
        ("line 7", f"column 'px': 1E-100001 {OUT_OF_RANGE}"),
    ]


def test_a_price_adjusted_beyond_the_range_is_a_bad_row(write, context) -> None:
    path = write(
        "yahoo.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,1,2,1,1,1,100\n"
        "2024-01-03,1,1E+99999,1,1,9E+99999,100\n"
        "2024-01-04,1,2,1,1,1,100\n",
    )
    feed = ReplayFeed(path=path, instrument="X", format="yahoo", price_column="adj_close")
    bars = list(feed.events(context.feed))
    assert [b.high for b in bars] == [D(2), D(2)]
    assert [(d.location, d.reason) for d in context.dead_letters] == [
        (
            "line 3",
            f"adjusted by Adj Close 9E+99999: 9E+199998 {OUT_OF_RANGE}",
        )
    ]
