"""The block readers of the replay feed give exactly what row-by-row reading gives.

CSV text is split on the delimiter many rows at once while it holds no quotes, NUL characters
or lone carriage returns, and tick rows are parsed a column at a time. Both must agree with
the csv module and with the row-by-row parser on every input, good or bad: these tests compare
them on files built to hit each case, with small read chunks so block boundaries fall
everywhere.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tradeloom_replay.feed import ReplayFeed
from tradeloom_replay.rows import BadRow, BarTiming, RowParser, TimeReader, resolve_layout
from tradeloom_replay.sources import CsvSource, RowBlock

CHUNKS = (1, 7, 64, 1 << 16)


def reference_rows(text: str) -> list[tuple[int, list[str], str]]:
    """(first line, fields, raw text) of each non-blank record after the header, per csv."""
    physical: list[str] = []

    def tap():
        for line in io.StringIO(text, newline=""):
            physical.append(line)
            yield line

    reader = csv.reader(tap())
    found = []
    header_seen = False
    for row in reader:
        raw = "".join(physical).rstrip("\r\n")
        first = reader.line_num - len(physical) + 1
        physical.clear()
        if not row:
            continue
        if not header_seen:
            header_seen = True
            continue
        found.append((first, row, raw))
    return found


def block_rows(path: Path, chunk: int) -> list[tuple[int, list[str], str]]:
    source = CsvSource(path, delimiter=",", encoding="utf-8", header=True, chunk_chars=chunk)
    found = []
    for block in source.blocks():
        for index, row in enumerate(block.rows):
            where = source.location(block, index)
            raw = source.raw(block, index).decode("utf-8")
            found.append((int(where.removeprefix("line ")), list(row), raw))
    return found


TEXTS = {
    "plain": "ts,price\n2024-01-02,1\n2024-01-03,2\n2024-01-04,3\n",
    "no final line break": "ts,price\n2024-01-02,1\n2024-01-03,2",
    "windows line breaks": "ts,price\r\n2024-01-02,1\r\n2024-01-03,2\r\n",
    "blank lines": "ts,price\n\n2024-01-02,1\n\n\n2024-01-03,2\n\n",
    "quoted header": '"ts","price"\n2024-01-02,1\n2024-01-03,2\n',
    "quotes half way": "ts,price\n2024-01-02,1\n2024-01-03,2\n"
    + "".join(f"2024-02-{d:02d},{d}\n" for d in range(1, 20))
    + '"2024-03-01","4"\n2024-03-02,5\n',
    "quoted line break": 'ts,price\n2024-01-02,1\n"2024-01-03\n",2\n2024-01-04,3\n',
    "lone carriage return": "ts,price\n2024-01-02,1\r2024-01-03,2\n2024-01-04,3\n",
    "only carriage returns": "ts,price\r2024-01-02,1\r\r2024-01-03,2\r2024-01-04,3\r",
    "carriage returns, then windows line breaks": "ts,price\r"
    + "".join(f"2024-01-{d:02d},{d}\r" for d in range(1, 20))
    + "".join(f"2024-02-{d:02d},{d}\r\n" for d in range(1, 20)),
    "spaces kept": "ts,price\n 2024-01-02 , 1 \n2024-01-03,2\n",
    "NUL character": "ts,price\n2024-01-02,1\n2024-01-03,\x002\n",
    "short and long rows": "ts,price\n2024-01-02\n2024-01-03,2,extra\n,\n",
}


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("chunk", CHUNKS)
def test_blocks_hold_what_the_csv_module_reads(tmp_path: Path, name: str, chunk: int) -> None:
    text = TEXTS[name]
    path = tmp_path / "data.csv"
    path.write_bytes(text.encode("utf-8"))
    expected = reference_rows(text)
    assert expected, "the sample must have rows"
    assert block_rows(path, chunk) == expected


def test_a_long_file_in_small_chunks_keeps_every_line_number(tmp_path: Path) -> None:
    lines = ["ts,price"] + [f"2024-01-01T00:00:{i % 60:02d},{i}" for i in range(5000)]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = block_rows(path, 100)
    assert [number for number, _, _ in rows] == list(range(2, 5002))
    assert rows[-1][1] == ["2024-01-01T00:00:19", "4999"]


# --------------------------------------------------------------------------------------------
# Tick rows, a column at a time


def parser(zone: str = "UTC", timestamp_format: str | None = None, **columns: str) -> RowParser:
    mapping = columns or {"ts": "ts", "last_price": "price"}
    header = list(dict.fromkeys(mapping.values()))
    layout = resolve_layout(mapping, header, source="test")
    return RowParser(
        kind="tick",
        layout=layout,
        instrument="X",
        times=TimeReader(timestamp_format, UTC if zone == "UTC" else ZoneInfo(zone)),
        timing=None,
        adjusted=False,
    )


def block_of(rows: list[list[str]], as_text: bool = False) -> RowBlock:
    if as_text:
        return RowBlock(None, range(len(rows)), [",".join(row) for row in rows], delimiter=",")
    return RowBlock(rows, range(len(rows)))


def parse_each(one: RowParser, rows: list[list[str]]) -> list[object]:
    """Each row through the row parser: its result, or "bad: reason"."""
    out: list[object] = []
    for row in rows:
        try:
            out.append(one.parse(row))
        except BadRow as exc:
            out.append(f"bad: {exc}")
    return out


def row_by_row(rows: list[list[str]], **kwargs: str) -> list[object]:
    return parse_each(parser(**kwargs), rows)


GOOD_BLOCKS = {
    "naive": ([["2024-01-02 10:00:00", "1.10"], ["2024-01-02 10:00:01", "1E+2"]], {}),
    "zulu": ([["2024-01-02T10:00:00Z", "1.5"], ["2024-01-02T10:00:00Z", "0.0001"]], {}),
    "offset": ([["2024-01-02T10:00:00+01:00", "3"], ["2024-01-02T09:30:00Z", "4"]], {}),
    "new york": (
        [["2024-03-10 01:59:59", "1"], ["2024-03-10 03:00:00", "2"]],
        {"zone": "America/New_York"},
    ),
    "unix": ([["1704189600", "1"], ["1704189600.5", "2"]], {"timestamp_format": "unix"}),
    "date only": ([["2024-01-02", "1"], ["2024-01-03", "2"]], {}),
    "mixed date and time": ([["2024-01-02", "1"], ["2024-01-02T10:00:00", "2"]], {}),
    "pattern": (
        [["01/02/2024 10:00:00", "1"], ["01/02/2024 10:00:05", "2"]],
        {"timestamp_format": "%m/%d/%Y %H:%M:%S"},
    ),
}


@pytest.mark.parametrize("name", sorted(GOOD_BLOCKS))
def test_a_good_block_parses_as_row_by_row(name: str) -> None:
    rows, kwargs = GOOD_BLOCKS[name]
    block = parser(**kwargs).parse_block(block_of(rows))
    assert block is not None
    parsed = list(block)
    assert parsed == row_by_row(rows, **kwargs)
    for ts, *_ in parsed:
        assert ts.tzinfo is UTC


def test_optional_columns_and_mids_parse_as_row_by_row() -> None:
    rows = [["2024-01-02T10:00:00", "1.01", "1.03", "5"], ["2024-01-02T10:00:01", "1", "2", "0"]]
    kwargs = {"ts": "ts", "bid": "bid", "ask": "ask", "volume": "volume"}
    block = parser(**kwargs).parse_block(block_of(rows))
    assert block is not None
    parsed = list(block)
    assert parsed == row_by_row(rows, **kwargs)
    assert parsed[0][2] == Decimal("1.02")  # the mid


BAD_ROWS = {
    "zero price": ["2024-01-02 10:00:02", "0"],
    "negative price": ["2024-01-02 10:00:02", "-1"],
    "not a number": ["2024-01-02 10:00:02", "abc"],
    "NaN": ["2024-01-02 10:00:02", "NaN"],
    "sNaN": ["2024-01-02 10:00:02", "sNaN"],
    "infinite": ["2024-01-02 10:00:02", "Infinity"],
    "empty price": ["2024-01-02 10:00:02", ""],
    "underscore in price": ["2024-01-02 10:00:02", "2_5"],
    "non-ASCII digits": ["2024-01-02 10:00:02", "\u0661\u0662"],
    "price beyond the range": ["2024-01-02 10:00:02", "1e999999"],
    "price below the range": ["2024-01-02 10:00:02", "1E-100001"],
    "bad time": ["2024-13-02 10:00:02", "1"],
    "empty time": ["", "1"],
    "out of order": ["2024-01-02 09:00:00", "1"],
    "too wide": ["2024-01-02 10:00:02", "1", "2"],
    "too narrow": ["2024-01-02 10:00:02"],
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_a_block_with_a_bad_row_is_left_to_the_row_parser(name: str) -> None:
    good = [["2024-01-02 10:00:00", "1"], ["2024-01-02 10:00:01", "2"]]
    rows = [*good, BAD_ROWS[name], ["2024-01-02 10:00:03", "3"]]
    one = parser()
    assert one.parse_block(block_of(rows)) is None
    # Nothing was remembered from the refused block: the row path still sees every row.
    results = parse_each(one, rows)
    assert results == row_by_row(rows)
    assert isinstance(results[2], str) and results[2].startswith("bad: ")


@pytest.mark.parametrize("tiny", ["1E-100001", "0." + "0" * 100_000 + "1"], ids=["exp", "plain"])
def test_a_tiny_volume_among_zeros_is_left_to_the_row_parser(tiny: str) -> None:
    # With a zero in the column the lowest value says nothing of the smallest non-zero one.
    kwargs = {"ts": "ts", "last_price": "price", "volume": "volume"}
    rows = [["2024-01-02T10:00:00", "1", "0"], ["2024-01-02T10:00:01", "2", tiny]]
    one = parser(**kwargs)
    assert one.parse_block(block_of(rows)) is None
    bad = parse_each(one, rows)[1]
    assert isinstance(bad, str)
    assert bad.startswith("bad: column 'volume': 1E-100001 is out of range")


def test_a_block_earlier_than_the_block_before_is_refused() -> None:
    one = parser()
    first = one.parse_block(block_of([["2024-01-02 10:00:00", "1"], ["2024-01-02 10:00:05", "2"]]))
    assert first is not None and len(list(first)) == 2
    assert one.parse_block(block_of([["2024-01-02 10:00:04", "1"]])) is None
    with pytest.raises(BadRow, match="out of order"):
        one.parse(["2024-01-02 10:00:04", "1"])


# --------------------------------------------------------------------------------------------
# The feed, end to end


def test_feed_events_match_a_reference_built_by_validation(tmp_path: Path, context) -> None:
    start = datetime(2024, 1, 2, tzinfo=UTC)
    lines = ["ts,price,volume"]
    for i in range(3000):
        volume = "" if i % 1000 == 999 else str(i % 7)  # an empty optional column now and then
        lines.append(
            f"{(start + timedelta(seconds=i)).isoformat()},{100 + i % 13}.{i % 100:02d},{volume}"
        )
    lines.insert(1500, '"2024-01-02T00:30:00Z",abc,1')  # a bad, quoted row half way
    path = tmp_path / "ticks.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    feed = ReplayFeed(
        path=path,
        instrument="X",
        format="custom",
        columns={"ts": "ts", "last_price": "price", "volume": "volume"},
    )
    events = list(feed.events(context.feed))
    assert len(events) == 3000 and feed.bad_rows == 1 and feed.rows_read == 3001
    assert context.dead_letters[0].location == "line 1501"
    assert context.dead_letters[0].raw == b'"2024-01-02T00:30:00Z",abc,1'
    for i, event in enumerate(events):
        volume = None if i % 1000 == 999 else Decimal(i % 7)
        assert event.ts == start + timedelta(seconds=i) and event.ts.tzinfo is UTC
        assert event.last_price == Decimal(f"{100 + i % 13}.{i % 100:02d}")
        assert event.volume == volume
        assert event.model_fields_set == {"event_id", "ts", "instrument", "last_price", "volume"}
    ids = [event.event_id for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize("as_text", [False, True])
def test_columns_need_every_row_to_have_the_width(as_text: bool) -> None:
    good = [["a", "1"], ["b", "2"], ["c", "3"]]
    assert [list(c) for c in block_of(good, as_text).columns(2)] == [
        ["a", "b", "c"],
        ["1", "2", "3"],
    ]
    # One row short and one long: as many fields in all, but not row by row.
    assert block_of([["a"], ["b", "2", "x"], ["c", "3"]], as_text).columns(2) is None
    assert block_of([["a", "1", "x"], ["b", "2"], ["c", "3", "y", "z"]], as_text).columns(3) is None
    assert block_of([["a", "1", "x"], ["b", "2", "y"]], as_text).columns(3) is not None
    assert [list(c) for c in block_of([["a"], ["b"]], as_text).columns(1)] == [["a", "b"]]
    assert block_of([["a"], ["b", "2"]], as_text).columns(1) is None
    assert block_of(good, as_text).columns(3) is None
    assert block_of([], as_text).columns(2) is None


# --------------------------------------------------------------------------------------------
# Bar rows, a column at a time

BAR_COLUMNS = {"ts": "ts", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}


def bar_parser(
    interval: timedelta = timedelta(minutes=1),
    marks: str = "start",
    zone: str = "UTC",
    columns: dict[str, str] | None = None,
) -> RowParser:
    mapping = columns or BAR_COLUMNS
    layout = resolve_layout(mapping, list(mapping.values()), source="test")
    return RowParser(
        kind="bar",
        layout=layout,
        instrument="X",
        times=TimeReader(None, UTC if zone == "UTC" else ZoneInfo(zone)),
        timing=BarTiming(interval=interval, marks=marks),  # type: ignore[arg-type]
        adjusted=False,
    )


def bars_row_by_row(rows: list[list[str]], **kwargs: object) -> list[object]:
    return parse_each(bar_parser(**kwargs), rows)  # type: ignore[arg-type]


GOOD_BARS = [
    ["2024-01-02 10:00:00", "10", "11", "9", "10.5", "100"],
    ["2024-01-02 10:01:00", "10.5", "10.5", "10.5", "10.5", "0"],
    ["2024-01-02 10:05:00", "1E+1", "12", "10", "11", "7"],
]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"marks": "end"},
        {"interval": timedelta(days=1)},
        {"interval": timedelta(minutes=5), "zone": "America/New_York"},
    ],
    ids=["start", "end", "days in UTC", "minutes in New York"],
)
def test_a_good_bar_block_parses_as_row_by_row(kwargs: dict[str, object]) -> None:
    rows = GOOD_BARS
    if kwargs.get("interval") == timedelta(days=1):
        rows = [["2024-01-02", *GOOD_BARS[0][1:]], ["2024-01-03", *GOOD_BARS[1][1:]]]
    if kwargs.get("interval") == timedelta(minutes=5):
        rows = [GOOD_BARS[0], GOOD_BARS[2]]
    block = bar_parser(**kwargs).parse_block(block_of(rows, as_text=True))  # type: ignore[arg-type]
    assert block is not None
    parsed = list(block)
    assert parsed == bars_row_by_row(rows, **kwargs)
    assert all(bar[0].tzinfo is UTC and bar[7].tzinfo is UTC for bar in parsed)


def test_bars_without_a_volume_column_have_volume_zero() -> None:
    columns = {k: v for k, v in BAR_COLUMNS.items() if k != "volume"}
    rows = [row[:5] for row in GOOD_BARS]
    block = bar_parser(columns=columns).parse_block(block_of(rows))
    assert block is not None
    parsed = list(block)
    assert parsed == bars_row_by_row(rows, columns=columns)
    assert {bar[6] for bar in parsed} == {Decimal(0)}


def test_whole_days_in_a_zone_with_daylight_saving_go_row_by_row() -> None:
    one = bar_parser(interval=timedelta(days=1), zone="America/New_York")
    rows = [["2024-03-09", "10", "11", "9", "10", "1"], ["2024-03-10", "10", "11", "9", "10", "1"]]
    assert one.parse_block(block_of(rows)) is None
    one.parse(rows[0])
    second = one.parse(rows[1])
    assert second[8] - second[7] == timedelta(hours=23)  # the day clocks go forward


BAD_BARS = {
    "high below low": ["2024-01-02 10:02:00", "10", "9", "11", "10", "1"],
    "open above high": ["2024-01-02 10:02:00", "12", "11", "9", "10", "1"],
    "close below low": ["2024-01-02 10:02:00", "10", "11", "9", "8", "1"],
    "negative volume": ["2024-01-02 10:02:00", "10", "11", "9", "10", "-1"],
    "underscore in volume": ["2024-01-02 10:02:00", "10", "11", "9", "10", "1_000"],
    "underscore in high": ["2024-01-02 10:02:00", "10", "1_1", "9", "10", "1"],
    "zero price": ["2024-01-02 10:02:00", "0", "11", "9", "10", "1"],
    "duplicate": ["2024-01-02 10:01:00", "10", "11", "9", "10", "1"],
    "overlap": ["2024-01-02 10:01:30", "10", "11", "9", "10", "1"],
    "out of order": ["2024-01-02 09:00:00", "10", "11", "9", "10", "1"],
}


@pytest.mark.parametrize("name", sorted(BAD_BARS))
def test_a_bar_block_with_a_bad_row_is_left_to_the_row_parser(name: str) -> None:
    rows = [*GOOD_BARS[:2], BAD_BARS[name]]
    one = bar_parser()
    assert one.parse_block(block_of(rows)) is None
    results = parse_each(one, rows)
    assert results == bars_row_by_row(rows)
    assert isinstance(results[2], str)
