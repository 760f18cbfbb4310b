"""Parquet files replay like CSV ones when pyarrow is installed."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tradeloom_replay import ReplayFeed

D = Decimal


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ticks.parquet"
    path.write_bytes(b"PAR1")
    # Make "import pyarrow.parquet" fail as it does where pyarrow is not installed.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match="pip install pyarrow"):
        ReplayFeed(path=path, instrument="X", columns={"ts": "ts", "last_price": "px"})


def test_parquet_ticks(tmp_path, context) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "ts": pa.array(
                [
                    datetime(2024, 1, 1, 9, 30, tzinfo=UTC),
                    datetime(2024, 1, 1, 9, 31, tzinfo=UTC),
                    datetime(2024, 1, 1, 9, 32, tzinfo=UTC),
                    datetime(2024, 1, 1, 9, 33, tzinfo=UTC),
                ],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "px": pa.array([D("101.25"), D("-1.00"), D("101.50"), None], type=pa.decimal128(10, 2)),
            "qty": pa.array([10, 5, 0, 1], type=pa.int64()),
            "venue": pa.array(["X", "X", "Y", "Y"]),
        }
    )
    path = tmp_path / "ticks.parquet"
    pq.write_table(table, path, row_group_size=2)

    feed = ReplayFeed(
        path=path,
        instrument="ACME",
        columns={"ts": "ts", "last_price": "px", "volume": "qty"},
        timezone="Asia/Tokyo",  # the column is UTC-typed, so this does not apply
    )
    ticks = list(feed.events(context.feed))
    assert [(t.ts, t.last_price, t.volume) for t in ticks] == [
        (datetime(2024, 1, 1, 9, 30, tzinfo=UTC), D("101.25"), D("10")),
        (datetime(2024, 1, 1, 9, 32, tzinfo=UTC), D("101.50"), D("0")),
    ]
    assert str(ticks[0].last_price) == "101.25"
    assert feed.rows_read == 4 and feed.bad_rows == 2
    negative, empty = context.dead_letters
    assert (negative.location, empty.location) == ("row 2", "row 4")
    assert "must be greater than zero" in negative.reason
    assert "column 'px' is empty" in empty.reason
    assert b'"px": "-1.00"' in negative.raw
    assert negative.source == str(path)


def test_parquet_bars_with_string_columns_and_naive_dates(tmp_path, context) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "Date": ["2024-01-02", "2024-01-03"],
            "Open": ["10", "11"],
            "High": ["12", "12"],
            "Low": ["9", "10"],
            "Close": ["11", "11.5"],
            "Adj Close": ["11", "11.5"],
            "Volume": [100, 200],
        }
    )
    path = tmp_path / "daily.parquet"
    pq.write_table(table, path)
    feed = ReplayFeed(path=path, format="yahoo", instrument="X", timezone="America/New_York")
    bars = list(feed.events(context.feed))
    assert [b.start for b in bars] == [
        datetime(2024, 1, 2, 5, tzinfo=UTC),
        datetime(2024, 1, 3, 5, tzinfo=UTC),
    ]
    assert bars[1].close == D("11.5")
    assert context.dead_letters == []


def test_nanosecond_timestamps_are_cut_to_microseconds(tmp_path, context) -> None:
    # pandas writes datetime64[ns]; Python's datetime holds microseconds. An ISO text with
    # nine digits is read the same way.
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from datetime import date, time

    stamps = [-1, 1704189600000000001, 1704189600000000999, 1704189600000001000]
    table = pa.table(
        {
            "ts": pa.array(stamps, type=pa.timestamp("ns", tz="UTC")),
            "px": ["1", "2", "3", "4"],
            "d": pa.array([date(2024, 1, 2)] * 4, type=pa.date32()),
            "t": pa.array([1, 1999, 36_000_000_001_999, 36_000_000_002_000], type=pa.time64("ns")),
        }
    )
    path = tmp_path / "ns.parquet"
    pq.write_table(table, path)
    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "ts", "last_price": "px"})
    assert [t.ts for t in feed.events(context.feed)] == [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 1, 2, 10, 0, tzinfo=UTC),
        datetime(2024, 1, 2, 10, 0, tzinfo=UTC),
        datetime(2024, 1, 2, 10, 0, 0, 1, tzinfo=UTC),
    ]
    by_date_and_time = ReplayFeed(
        path=path, instrument="X", columns={"date": "d", "time": "t", "last_price": "px"}
    )
    assert [t.ts.time() for t in by_date_and_time.events(context.feed)] == [
        time(0, 0),
        time(0, 0, 0, 1),
        time(10, 0, 0, 1),
        time(10, 0, 0, 2),
    ]
    assert context.dead_letters == []


def test_nanosecond_timestamps_of_a_zone_are_read_across_a_clock_change(tmp_path, context) -> None:
    # datetime64[ns, Europe/London] as pandas writes it: 00:30 and 01:30 UTC on 2023-10-29
    # are both 01:30 in London (pyarrow floors a zoned timestamp in its local time).
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    stamps = [1698537600_000_000_999, 1698539400_000_000_000, 1698543000_000_001_500]
    table = pa.table(
        {
            "ts": pa.array(stamps, type=pa.timestamp("ns", tz="Europe/London")),
            "px": ["10", "11", "12"],
        }
    )
    path = tmp_path / "london.parquet"
    pq.write_table(table, path)
    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "ts", "last_price": "px"})
    assert [t.ts for t in feed.events(context.feed)] == [
        datetime(2023, 10, 29, 0, 0, tzinfo=UTC),
        datetime(2023, 10, 29, 0, 30, tzinfo=UTC),
        datetime(2023, 10, 29, 1, 30, 0, 1, tzinfo=UTC),
    ]
    assert context.dead_letters == []


@pytest.mark.parametrize(
    "params",
    [
        {"format": "bidask"},  # the preset's '%m/%d/%Y %H:%M:%S'
        {"columns": {"ts": "TIMESTAMP", "bid": "BID", "ask": "ASK"}, "timestamp_format": "unix"},
        {"format": "bidask", "timestamp_format": "%d.%m.%Y %H:%M"},
    ],
    ids=["preset", "unix", "pattern"],
)
def test_timestamp_columns_are_read_as_times_whatever_the_timestamp_format(
    tmp_path, context, params
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "TIMESTAMP": pa.array(
                [datetime(2010, 2, 3, 16, 53, 50), datetime(2010, 2, 3, 16, 53, 51)],
                type=pa.timestamp("s"),
            ),
            "BID": ["0.5346", "0.5343"],
            "ASK": ["0.5347", "0.5347"],
        }
    )
    path = tmp_path / "quotes.parquet"
    pq.write_table(table, path)
    feed = ReplayFeed(path=path, instrument="AUDUSD", timezone="America/New_York", **params)
    ticks = list(feed.events(context.feed))
    assert context.dead_letters == []
    assert [(t.ts, t.last_price) for t in ticks] == [
        (datetime(2010, 2, 3, 21, 53, 50, tzinfo=UTC), D("0.53465")),
        (datetime(2010, 2, 3, 21, 53, 51, tzinfo=UTC), D("0.5345")),
    ]


def test_a_parquet_date_joined_with_a_text_time_in_a_pattern_is_refused_at_start(
    tmp_path,
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from datetime import date

    table = pa.table(
        {"d": pa.array([date(2024, 1, 2)], type=pa.date32()), "t": ["10:00"], "px": ["1"]}
    )
    path = tmp_path / "mixed.parquet"
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=r"mixed\.parquet: 'd' hold Parquet times but 't' text"):
        ReplayFeed(
            path=path,
            instrument="X",
            columns={"date": "d", "time": "t", "last_price": "px"},
            timestamp_format="%Y-%m-%d %H:%M",
        )


def test_a_file_that_is_not_parquet_is_named(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "ticks.parquet"
    path.write_text("ts,px\n2024-01-02T10:00:00,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ticks\.parquet: not a readable Parquet file \("):
        ReplayFeed(path=path, instrument="X", columns={"ts": "ts", "last_price": "px"})


def test_a_parquet_file_damaged_after_its_first_rows_stops_the_replay_naming_it(
    tmp_path, context
) -> None:
    from datetime import timedelta

    from tradeloom.errors import BadInputError
    from tradeloom_replay.sources import PARQUET_BATCH_ROWS

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = 3 * PARQUET_BATCH_ROWS
    start = datetime(2024, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "ts": pa.array(
                [start + timedelta(seconds=i) for i in range(rows)], type=pa.timestamp("us", "UTC")
            ),
            "px": [str(100 + i % 7) for i in range(rows)],
        }
    )
    path = tmp_path / "damaged.parquet"
    pq.write_table(table, path, row_group_size=PARQUET_BATCH_ROWS)
    # Garble the page header of the second row group's prices; the footer stays readable.
    offset = pq.ParquetFile(path).metadata.row_group(1).column(1).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = bytes(b ^ 0xAB for b in data[offset : offset + 64])
    path.write_bytes(bytes(data))

    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "ts", "last_price": "px"})
    events = feed.events(context.feed)
    with pytest.raises(BadInputError) as caught:
        for _ in events:
            pass
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read the Parquet file from row ")
    assert "\n" not in message
    assert feed.events_emitted == PARQUET_BATCH_ROWS


@pytest.mark.parametrize(
    ("column", "values", "bad_row"),
    [
        ("date32", [19000, 19001, 19002, 3_000_000, 19004], 4),  # a date in the year 10183
        ("timestamp", [10**15, 10**15 + 10**9, 2**62, 10**15 + 3 * 10**9, 10**15 + 4 * 10**9], 3),
    ],
)
def test_a_parquet_value_python_cannot_hold_is_a_bad_row_not_a_refused_file(
    tmp_path, context, column: str, values: list[int], bad_row: int
) -> None:
    # Converting the batch failed as a whole: "cannot read the Parquet file from row 1 on",
    # and the valid rows around it were never delivered.
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    kind = pa.date32() if column == "date32" else pa.timestamp("us", "UTC")
    path = tmp_path / "far.parquet"
    pq.write_table(pa.table({"t": pa.array(values, type=kind), "p": ["1"] * len(values)}), path)
    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "t", "last_price": "p"})
    ticks = list(feed.events(context.feed))
    assert len(ticks) == len(values) - 1
    (letter,) = context.dead_letters
    assert letter.location == f"row {bad_row}"
    assert letter.reason.endswith(
        "; the Parquet file holds a value there that cannot be read (date value out of range)"
    )


def test_a_parquet_column_no_value_of_which_can_be_read_refuses_the_file(tmp_path, context) -> None:
    # A time zone pyarrow does not know: the column, not one value, is unreadable (it was
    # one bad row per row).
    from tradeloom.errors import BadInputError

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    times = pa.array([1_700_000_000 + i for i in range(5)], pa.timestamp("s", tz="Mars/Olympus"))
    path = tmp_path / "mars.parquet"
    pq.write_table(pa.table({"t": times, "p": ["1"] * 5}), path)
    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "t", "last_price": "p"})
    with pytest.raises(BadInputError, match=r"mars\.parquet: cannot read the Parquet file from"):
        list(feed.events(context.feed))
