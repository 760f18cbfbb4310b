"""Bad rows: skipped and reported as dead letters (on_error="skip"), or fatal ("stop")."""

from __future__ import annotations

import bz2
import codecs
import gzip
import logging
import lzma
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import tradeloom
from tradeloom.components import DeadLetter
from tradeloom.errors import BadInputError
from tradeloom.testing.feeds import FeedRun, collect_events
from tradeloom_replay import ReplayFeed

D = Decimal

TICKS = (
    "time,px,qty\n"  # line 1
    "2024-01-01T00:00:00,100.5,1\n"  # 2 ok
    "2024-01-01T00:00:01,-3,1\n"  # 3 negative price
    "2024-01-01T00:00:02,abc,1\n"  # 4 not a number
    "2024-01-01T00:00:03,NaN,1\n"  # 5 NaN
    "2024-01-01T00:00:04\n"  # 6 missing columns
    "2024-01-01T00:00:05,Infinity,1\n"  # 7 infinite
    "2024-01-01T00:00:06,0,1\n"  # 8 zero price
    "yesterday,100,1\n"  # 9 unreadable date
    "2024-01-01T00:00:07,101,1\n"  # 10 ok
    "2024-01-01T00:00:03,102,1\n"  # 11 earlier than line 10
    "2024-01-01T00:00:08,103,-1\n"  # 12 negative volume
    "2024-01-01T00:00:08,103,\n"  # 13 ok: volume is optional for ticks
    "2024-01-01T00:00:09,104,2\n"  # 14 ok
)

EXPECTED = {
    "line 3": "must be greater than zero",
    "line 4": "'abc' is not a number",
    "line 5": "'NaN' is not a finite number",
    "line 6": "row has 1 fields, expected 3 (missing column 'px', 'qty')",
    "line 7": "'Infinity' is not a finite number",
    "line 8": "must be greater than zero, got 0",
    "line 9": "cannot read 'yesterday' as a timestamp",
    "line 11": "out of order",
    "line 12": "must not be negative",
}


def tick_feed(path, **params) -> ReplayFeed:
    return ReplayFeed(
        path=path,
        instrument="X",
        columns={"ts": "time", "last_price": "px", "volume": "qty"},
        **params,
    )


def test_bad_rows_are_skipped_and_reported(write, context) -> None:
    path = write("bad.csv", TICKS)
    feed = tick_feed(path)
    before = datetime.now(UTC)
    ticks = list(feed.events(context.feed))
    after = datetime.now(UTC)

    assert [t.last_price for t in ticks] == [D("100.5"), D("101"), D("103"), D("104")]
    assert feed.rows_read == 13
    assert feed.bad_rows == len(EXPECTED) == len(context.dead_letters)
    assert feed.events_emitted == 4
    lines = TICKS.splitlines()
    for letter in context.dead_letters:
        assert isinstance(letter, DeadLetter)
        assert letter.source == str(path)
        assert letter.error_type == "bad_row"
        # When it was refused (wall-clock): not the simulated clock, which the rows run ahead of.
        assert before <= letter.ts <= after and letter.ts.tzinfo is UTC
        assert EXPECTED[letter.location] in letter.reason, letter
        number = int(letter.location.split()[1])
        assert letter.raw == lines[number - 1].encode()
    assert [letter.location for letter in context.dead_letters] == list(EXPECTED)


def test_out_of_order_reason_names_both_times(write, context) -> None:
    path = write("bad.csv", TICKS)
    list(tick_feed(path).events(context.feed))
    (letter,) = [d for d in context.dead_letters if d.location == "line 11"]
    assert letter.reason == (
        "out of order: X at 2024-01-01T00:00:03+00:00 is earlier than the row before it "
        "at 2024-01-01T00:00:07+00:00"
    )


def test_stop_raises_naming_file_line_and_reason(write, context) -> None:
    path = write("bad.csv", TICKS)
    feed = tick_feed(path, on_error="stop")
    events = feed.events(context.feed)
    first = next(events)
    assert first.last_price == D("100.5")
    with pytest.raises(BadInputError) as caught:
        next(events)
    assert str(caught.value) == f"{path}: line 3: column 'px': must be greater than zero, got -3"
    assert feed.bad_rows == 1


def test_stop_on_out_of_order_row(write, context) -> None:
    path = write("order.csv", "time,px,qty\n2024-01-01T00:00:02,1,1\n2024-01-01T00:00:01,1,1\n")
    with pytest.raises(BadInputError, match=r"order\.csv: line 3: out of order"):
        list(tick_feed(path, on_error="stop").events(context.feed))


def test_equal_timestamps_are_not_out_of_order(write, context) -> None:
    path = write("same.csv", "time,px,qty\n2024-01-01T00:00:01,1,1\n2024-01-01T00:00:01,1,1\n")
    assert len(list(tick_feed(path).events(context.feed))) == 2
    assert context.dead_letters == []


YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2024-01-03,null,null,null,null,null,null", "column 'Open': 'null' is not a number"),
        ("2024-01-03,10,9,11,10,10,100", "high 9 is below low 11"),
        ("2024-01-03,12,11,9,10,10,100", "open 12 is outside low..high 9..11"),
        ("2024-01-03,10,11,9,8,8,100", "close 8 is outside low..high 9..11"),
        ("2024-01-03,10,11,9,10,10,-5", "column 'Volume': must not be negative, got -5"),
        ("2024-01-03,10,11,9,10,10", "row has 6 fields, expected 7 (missing column 'Volume')"),
        ("2024-01-03,10,11,9,10,10,100,7", "row has 8 fields, expected 7"),
        ("2024-13-03,10,11,9,10,10,100", "column 'Date': cannot read '2024-13-03'"),
        ("2024-01-02,10,11,9,10,10,100", "duplicate bar: X already has a bar starting"),
        ("2024-01-01,10,11,9,10,10,100", "out of order: X bar starting 2024-01-01"),
        ("2024-01-03,10,11,9,10,10,", "column 'Volume' is empty"),
    ],
)
def test_bad_daily_bars(write, context, row: str, reason: str) -> None:
    path = write(
        "daily.csv",
        YAHOO_HEADER
        + "2024-01-02,10,11,9,10,10,100\n"
        + row
        + "\n2024-01-04,10,11,9,10.5,10.5,100\n",
    )
    feed = ReplayFeed(path=path, format="yahoo", instrument="X")
    bars = list(feed.events(context.feed))
    assert [bar.start.day for bar in bars] == [2, 4]
    (letter,) = context.dead_letters
    assert letter.location == "line 3"
    assert reason in letter.reason, letter.reason
    assert letter.raw == row.encode()
    assert feed.bad_rows == 1 and feed.rows_read == 3


@pytest.mark.parametrize(
    ("rows", "interval", "reasons"),
    [
        (
            ["2024-01-02", "9999-12-31"],
            None,
            ["a bar of 1 day at 9999-12-31T00:00:00+00:00 ends after the year 9999"],
        ),
        (
            ["2024-01-02"],
            "3000000d",
            ["a bar of 3000000 days at 2024-01-02T00:00:00+00:00 ends after the year 9999"],
        ),
    ],
)
def test_a_bar_ending_past_the_year_9999_is_a_bad_row(
    write, context, rows: list[str], interval: str | None, reasons: list[str]
) -> None:
    # It was an OverflowError that stopped the whole replay, naming no file or line.
    path = write("far.csv", YAHOO_HEADER + "".join(f"{day},10,11,9,10,10,100\n" for day in rows))
    options = {"bar_interval": interval} if interval else {}
    feed = ReplayFeed(path=path, format="yahoo", instrument="X", **options)
    bars = list(feed.events(context.feed))
    assert len(bars) == len(rows) - len(reasons)
    assert [letter.reason for letter in context.dead_letters] == reasons


@pytest.mark.parametrize(
    ("stamp", "zone", "reason"),
    [
        ("0001-01-01T00:00:00", "Europe/Berlin", "0001-01-01T00:00:00+00:53"),
        ("9999-12-31T23:30:00", "America/New_York", "9999-12-31T23:30:00-05:00"),
        ("9999-12-31T23:30:00-05:00", "UTC", "9999-12-31T23:30:00-05:00"),
    ],
)
@pytest.mark.parametrize("kind", ["tick", "bar"])
def test_a_time_out_of_range_in_utc_is_a_bad_row(
    write, context, stamp: str, zone: str, reason: str, kind: str
) -> None:
    # A placeholder date that falls before year 1 or after 9999 once in UTC stopped the
    # whole replay with an OverflowError naming no file or line.
    rows = ["2024-01-02T10:00:00", stamp] if stamp < "5" else [stamp, "2024-01-02T10:00:00"]
    if kind == "tick":
        text = "time,px\n" + "".join(f"{row},10\n" for row in rows)
        feed = ReplayFeed(
            path=write("far.csv", text),
            instrument="X",
            columns={"ts": "time", "last_price": "px"},
            timezone=zone,
        )
    else:
        text = "time,o,h,l,c\n" + "".join(f"{row},10,11,9,10\n" for row in rows)
        feed = ReplayFeed(
            path=write("far.csv", text),
            instrument="X",
            columns={"ts": "time", "open": "o", "high": "h", "low": "l", "close": "c"},
            bar_interval="1h",
            timezone=zone,
        )
    events = list(feed.events(context.feed))
    assert len(events) == 1
    (letter,) = context.dead_letters
    assert reason in letter.reason and "out of range" in letter.reason, letter.reason


def test_overlapping_bars_point_at_bar_interval(write, context) -> None:
    path = write(
        "hourly.csv",
        "t,o,h,l,c\n2024-01-01T10:00:00,1,1,1,1\n2024-01-01T11:00:00,1,1,1,1\n",
    )
    columns = {"ts": "t", "open": "o", "high": "h", "low": "l", "close": "c"}
    feed = ReplayFeed(path=path, instrument="X", columns=columns, bar_interval="1d")
    assert len(list(feed.events(context.feed))) == 1
    (letter,) = context.dead_letters
    assert "overlaps the bar before it" in letter.reason
    assert "bar_interval" in letter.reason


def test_adjusted_close_must_be_valid_only_when_used(write, context) -> None:
    path = write("adj.csv", YAHOO_HEADER + "2024-01-02,10,11,9,10,null,100\n")
    assert (
        len(list(ReplayFeed(path=path, format="yahoo", instrument="X").events(context.feed))) == 1
    )
    adjusted = ReplayFeed(path=path, format="yahoo", instrument="X", price_column="adj_close")
    assert list(adjusted.events(context.feed)) == []
    assert "column 'Adj Close': 'null' is not a number" in context.dead_letters[0].reason


def test_a_yahoo_file_without_an_adjusted_close_is_read_on_its_close(write, context) -> None:
    path = write("new.csv", "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n")
    (bar,) = ReplayFeed(path=path, format="yahoo", instrument="X").events(context.feed)
    assert (bar.open, bar.close, bar.volume) == (Decimal(10), Decimal("10.5"), Decimal(100))
    with pytest.raises(ValueError, match=r"no column 'Adj Close' \(for adj_close\)"):
        ReplayFeed(path=path, format="yahoo", instrument="X", price_column="adj_close")


def test_undecodable_bytes_make_a_bad_row_with_exact_raw_bytes(write, context) -> None:
    raw_bad = b"2024-01-01T00:00:01,1\xff0,1"
    path = write(
        "bytes.csv",
        b"time,px,qty\n2024-01-01T00:00:00,1,1\n" + raw_bad + b"\n2024-01-01T00:00:02,3,1\n",
    )
    feed = tick_feed(path)
    assert [t.last_price for t in feed.events(context.feed)] == [D("1"), D("3")]
    (letter,) = context.dead_letters
    assert letter.raw == raw_bad
    assert "is not a number" in letter.reason


def test_bad_instrument_values(write, context) -> None:
    path = write(
        "sym.csv",
        "sym,t,p\n,2024-01-01T00:00:00,1\n"
        + "Y" * 201
        + ",2024-01-01T00:00:00,1\nOK,2024-01-01T00:00:00,1\n",
    )
    feed = ReplayFeed(path=path, columns={"instrument": "sym", "ts": "t", "last_price": "p"})
    assert [t.instrument for t in feed.events(context.feed)] == ["OK"]
    reasons = [d.reason for d in context.dead_letters]
    assert reasons == [
        "column 'sym' (instrument) is empty",
        "column 'sym': instrument is longer than 200 characters",
    ]


def test_multiline_quoted_record_reports_its_first_line_and_all_its_text(write, context) -> None:
    path = write(
        "ml.csv",
        'sym,t,p\nA,2024-01-01T00:00:00,1\n"B\nC",2024-01-01T00:00:00,x\nA,2024-01-01T00:00:01,2\n',
    )
    feed = ReplayFeed(path=path, columns={"instrument": "sym", "ts": "t", "last_price": "p"})
    assert len(list(feed.events(context.feed))) == 2
    (letter,) = context.dead_letters
    assert letter.location == "line 3"
    assert letter.reason == (
        "column 'sym': instrument 'B\\nC' has unprintable characters; the row runs from line 3 "
        "to line 4: a quoted field "
        "holds a line break (is a quote not closed where it should be?)"
    )
    assert letter.raw == b'"B\nC",2024-01-01T00:00:00,x'


def test_bad_rows_are_logged_with_a_summary(write, context, caplog) -> None:
    path = write("bad.csv", TICKS)
    with caplog.at_level(logging.DEBUG, logger="test.replay"):
        list(tick_feed(path).events(context.feed))
    rows = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("line 3" in m and "row skipped" in m for m in rows)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"replay: {path}: skipped 9 bad row(s); each was reported as bad input"]


def unclosed_quote_file(rows: int, at_line: int) -> str:
    start = datetime(2024, 1, 2, 10, tzinfo=UTC)
    lines = ["time,px,qty"]
    lines += [f"{(start + timedelta(seconds=i)).isoformat()},{10 + i % 7},1" for i in range(rows)]
    stamp = lines[at_line - 1].split(",")[0]
    lines[at_line - 1] = f'{stamp},"10.5,1'  # the quote is never closed
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("rows", "at_line"), [(36, 32), (5000, 4990)], ids=["short", "long"])
def test_an_unclosed_quote_is_reported_where_it_opens(write, context, rows, at_line) -> None:
    # The csv module reads everything after the quote as one field, to the end of the file
    # (the lines after it are lost with it): the dead letter points at the opening quote.
    path = write("unclosed.csv", unclosed_quote_file(rows, at_line))
    feed = tick_feed(path)
    events = list(feed.events(context.feed))
    last_line = rows + 1
    assert len(events) == at_line - 2
    (letter,) = context.dead_letters
    assert letter.location == f"line {at_line}"
    assert letter.reason == (
        "row has 2 fields, expected 3 (missing column 'qty'); unclosed quote: the quoted field "
        f"starting on line {at_line} runs on to line {last_line}, taking in every line up to there"
    )
    assert letter.raw.startswith(b"2024-01-02T") and b'"10.5,1\n' in letter.raw
    assert letter.raw.count(b"\n") == last_line - at_line


def test_an_unclosed_quote_stops_the_replay_at_its_line(write, context) -> None:
    path = write("unclosed.csv", unclosed_quote_file(36, 32))
    with pytest.raises(BadInputError, match=rf"{path}: line 32: .*unclosed quote.*line 32"):
        list(tick_feed(path, on_error="stop").events(context.feed))


def test_a_quote_closed_by_a_later_line_reports_where_it_opens(write, context) -> None:
    text = (
        "time,px,qty\n"
        '"2024-01-02T10:00:00",10,1\n'  # 2 ok
        '"2024-01-02T10:00:01","11,1\n'  # 3 the quote closes at the start of line 4
        '"2024-01-02T10:00:02",12,1\n'  # 4
        '"2024-01-02T10:00:03",13,1\n'  # 5 ok
    )
    path = write("late.csv", text)
    feed = tick_feed(path)
    assert [t.last_price for t in feed.events(context.feed)] == [D(10), D(13)]
    (letter,) = context.dead_letters
    assert letter.location == "line 3"
    assert letter.reason == (
        "row has 4 fields, expected 3; unclosed quote: the quoted field starting on line 3 "
        "runs on to line 4, taking in every line up to there"
    )


def test_a_backtest_of_a_file_sorted_by_instrument_stops_at_the_first_earlier_time(
    write, tmp_path
) -> None:
    # In order per instrument (as the feed checks), not across them: the backtest's clock
    # would have to go back from A's last time to B's first.
    rows = [f"A,2024-01-01T00:00:0{second},1{second}" for second in range(5)]
    rows += [f"B,2024-01-01T00:00:0{second},2{second}" for second in range(5)]
    path = write("by-instrument.csv", "sym,t,p\n" + "\n".join(rows) + "\n")
    config = {
        "feed": {
            "name": "replay",
            "params": {
                "path": str(path),
                "columns": {"instrument": "sym", "ts": "t", "last_price": "p"},
            },
        },
        "strategies": [{"name": "sma_cross", "params": {"fast": 1, "slow": 2}}],
        "persistence": {"name": "memory"},
    }
    with pytest.raises(BadInputError) as caught:
        tradeloom.backtest(config)
    assert str(caught.value).startswith(
        "feed ReplayFeed gave a market event for B at 2024-01-01T00:00:00+00:00 after one at "
        "2024-01-01T00:00:04+00:00: a backtest needs its events in time order"
    )


def test_each_files_summary_counts_its_own_bad_rows(write, context, caplog) -> None:
    # The files are read interleaved (merged by time): the feed's count of bad rows runs
    # across all of them, and each file's summary said that running total.
    header = "time,px\n"
    clean = write("clean.csv", header + "".join(f"2024-01-02T10:00:0{n},1{n}\n" for n in range(8)))
    dirty = write(
        "dirty.csv",
        header + "".join(f"2024-01-02T10:00:0{n},{'x' if n % 2 else n + 1}\n" for n in range(8)),
    )
    feed = ReplayFeed(paths={"A": clean, "B": dirty}, columns={"ts": "time", "last_price": "px"})
    with caplog.at_level(logging.WARNING, logger="test.replay"):
        events = list(feed.events(context.feed))
    assert len(events) == 12 and len(context.dead_letters) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"replay: {dirty}: skipped 4 bad row(s); each was reported as bad input"]


def test_undecodable_bytes_are_blamed_on_the_encoding(write, context) -> None:
    path = write("bytes.csv", b"time,px,qty\n2024-01-01T00:00:01,1\xff0,1\n")
    list(tick_feed(path).events(context.feed))
    (letter,) = context.dead_letters
    assert letter.reason == (
        "column 'px': '1\\udcff0' is not a number; column 'px' holds bytes that are not valid "
        "utf-8 (encoding = 'utf-8-sig'): b'1\\xff0'; is the encoding right?"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_bad_row_of_a_utf16_or_utf32_file_gives_its_own_bytes_back(
    write, context, encoding
) -> None:
    bad = "2024-01-01T00:00:01,x,1"
    text = f"time,px,qty\n2024-01-01T00:00:00,1,1\n{bad}\n"
    if encoding == "utf-16-be":  # a big-endian file with its byte-order mark
        content, row_bytes = codecs.BOM_UTF16_BE + text.encode("utf-16-be"), "utf-16-be"
    else:
        content = text.encode(encoding)  # "utf-16" and "utf-32" write a byte-order mark
        row_bytes = encoding if encoding.endswith("le") else f"{encoding}-le"
    path = write("wide.csv", content)
    feed = tick_feed(path, encoding="utf-16" if encoding == "utf-16-be" else encoding)
    assert [t.last_price for t in feed.events(context.feed)] == [D("1")]
    (letter,) = context.dead_letters
    assert letter.raw == bad.encode(row_bytes)
    assert letter.raw in content


@pytest.mark.parametrize("quoted", [False, True], ids=["split", "csv module"])
def test_lines_of_spaces_and_tabs_are_blank(write, context, quoted) -> None:
    price = '"1"' if quoted else "1"
    path = write(
        "spaces.csv",
        "  \n"  # 1: before the header
        "time,px,qty\n"  # 2
        f"2024-01-01T00:00:00,{price},1\n"  # 3
        "   \n"  # 4
        "\t \r\n"  # 5
        "2024-01-01T00:00:01,x,1\n"  # 6
        "2024-01-01T00:00:02,2,1\n"  # 7
        " ",  # 8
    )
    feed = tick_feed(path)
    assert [t.last_price for t in feed.events(context.feed)] == [D("1"), D("2")]
    assert feed.rows_read == 3
    assert [(d.location, d.reason) for d in context.dead_letters] == [
        ("line 6", "column 'px': 'x' is not a number")
    ]
    stopping = tick_feed(write("ok.csv", "time,px,qty\n2024-01-01T00:00:00,1,1\n \t \n"))
    stopping.on_error = "stop"
    assert len(list(stopping.events(context.feed))) == 1


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("ticks.csv.gz", gzip.compress),
        ("ticks.csv.bz2", bz2.compress),
        ("ticks.csv.xz", lzma.compress),
    ],
)
@pytest.mark.parametrize("header", [True, False])
def test_a_compressed_file_is_refused_at_start_saying_so(write, name, compress, header) -> None:
    path = write(name, compress(b"time,px,qty\n2024-01-01T00:00:00,1,1\n"))
    kind = name.rsplit(".", 1)[1]
    kind = {"gz": "gzip", "bz2": "bzip2"}.get(kind, kind)
    columns = {"ts": "time", "last_price": "px"} if header else {"ts": 0, "last_price": 1}
    with pytest.raises(ValueError) as caught:
        ReplayFeed(path=path, instrument="X", columns=columns, header=header)
    assert str(caught.value) == (
        f"{path}: the file is {kind}-compressed; compressed files are not supported: "
        "decompress it first (e.g. gunzip, unzip) and replay the plain file"
    )


# -- a replay restarted after an earlier run published part of it --------------------------

BLOCKS_OF_ROWS = 7_000  # about 230 KiB: four blocks of 64 KiB of text
BAD_LINES = (3, 1_500, 2_300, 4_700, 6_999)  # in the first, the middle and the last block


def _long_file(path: Path, shift_seconds: int = 0) -> tuple[Path, set[str]]:
    """A file of many blocks with a negative price on BAD_LINES; its bad rows' locations."""
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=shift_seconds)
    lines = ["time,px,qty"]
    for line in range(2, BLOCKS_OF_ROWS + 2):
        price = "-1" if line in BAD_LINES else f"{100 + line % 50}.25"
        ts = (start + timedelta(seconds=2 * line)).isoformat().replace("+00:00", "")
        lines.append(f"{ts},{price},1")
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 3 * 65_536
    return path, {f"line {line}" for line in BAD_LINES}


def _replay(
    paths: list[Path], *, limit: int | None = None, skip: int = 0
) -> tuple[ReplayFeed, FeedRun]:
    feed = ReplayFeed(
        paths=[str(p) for p in paths],
        instrument="X",
        columns={"ts": "time", "last_price": "px", "volume": "qty"},
    )
    return feed, collect_events(feed, limit=limit, skip_events=skip)


def _good_rows_before(line: int) -> int:
    return line - 2 - sum(1 for bad in BAD_LINES if bad < line)


@pytest.mark.parametrize(
    "published",
    [
        1,
        4_000,
        BLOCKS_OF_ROWS - len(BAD_LINES),  # all of it
        # Right before and right after a bad row, in the first, a middle and the last block.
        *(_good_rows_before(line) + shift for line in BAD_LINES for shift in (0, 1)),
    ],
    ids=lambda n: f"{n}-published",
)
def test_a_restarted_replay_reports_each_bad_row_once_over_both_runs(tmp_path, published) -> None:
    path, bad = _long_file(tmp_path / "ticks.csv")
    _, whole = _replay([path])
    _, first = _replay([path], limit=published)
    feed, rest = _replay([path], skip=published)

    assert [e.ts for e in first.events + rest.events] == [e.ts for e in whole.events]
    reported = [(letter.source, letter.location) for letter in first.dead_letters]
    reported += [(letter.source, letter.location) for letter in rest.dead_letters]
    assert sorted(reported) == sorted((str(path), where) for where in bad)
    assert feed.bad_rows == len(rest.dead_letters)  # this run's count: what it reported


def test_a_restarted_merge_of_files_reports_each_bad_row_once_over_both_runs(tmp_path) -> None:
    one, bad_one = _long_file(tmp_path / "one.csv")
    two, bad_two = _long_file(tmp_path / "two.csv", shift_seconds=1)
    _, whole = _replay([one, two])
    for published in (1, 3_000, 9_000):
        _, first = _replay([one, two], limit=published)
        _, rest = _replay([one, two], skip=published)
        assert [e.ts for e in first.events + rest.events] == [e.ts for e in whole.events]
        reported = sorted(
            (letter.source, letter.location) for letter in first.dead_letters + rest.dead_letters
        )
        assert reported == sorted(
            [(str(one), where) for where in bad_one] + [(str(two), where) for where in bad_two]
        ), published


def test_rows_appended_after_a_whole_replay_was_published_have_their_bad_rows_reported(
    tmp_path,
) -> None:
    # The first run published the whole file; rows added to its end since (one of them bad)
    # are read with the last block of what it published, and their bad row is not its.
    path, bad = _long_file(tmp_path / "ticks.csv")
    _, first = _replay([path])
    last = first.events[-1].ts
    added = [
        f"{(last + timedelta(seconds=n)).isoformat().replace('+00:00', '')},{price},1"
        for n, price in ((1, "101.5"), (2, "-2"), (3, "102.5"))
    ]
    with path.open("a") as file:
        file.write("\n".join(added) + "\n")
    _, rest = _replay([path], skip=len(first.events))
    assert [e.last_price for e in rest.events] == [Decimal("101.5"), Decimal("102.5")]
    assert [letter.location for letter in rest.dead_letters] == [f"line {BLOCKS_OF_ROWS + 3}"]
    assert sorted(letter.location for letter in first.dead_letters) == sorted(bad)
