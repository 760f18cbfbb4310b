"""Custom column mappings, timestamp formats, time zones and bar timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tradeloom.events import Bar, MarketTick
from tradeloom_replay import ReplayFeed

D = Decimal


def test_custom_ticks_with_renamed_columns(write, context) -> None:
    path = write(
        "trades.csv",
        "time,px,qty,size,note\n"
        "2024-03-01T09:30:00.250,101.25,300,3,a\n"
        "2024-03-01T09:30:01,101.5,0,1,b\n",
    )
    feed = ReplayFeed(
        path=path,
        instrument="ACME",
        columns={"ts": "time", "last_price": "px", "volume": "qty", "last_quantity": "size"},
    )
    assert (feed.format, feed.kind) == ("custom", "tick")
    ticks = list(feed.events(context.feed))
    assert [type(t) for t in ticks] == [MarketTick, MarketTick]
    assert ticks[0].ts == datetime(2024, 3, 1, 9, 30, 0, 250000, tzinfo=UTC)
    assert (ticks[0].last_price, ticks[0].volume, ticks[0].last_quantity) == (
        D("101.25"),
        D("300"),
        D("3"),
    )
    assert ticks[1].volume == D("0")
    assert ticks[1].instrument == "ACME"


def test_custom_bid_ask_without_last_price_uses_the_mid(write, context) -> None:
    path = write("q.csv", "t,b,a\n2024-01-01T00:00:00Z,1.10005,1.10015\n")
    feed = ReplayFeed(path=path, instrument="EURUSD", columns={"ts": "t", "bid": "b", "ask": "a"})
    (tick,) = feed.events(context.feed)
    assert tick.last_price == D("1.1001")
    assert (tick.bid, tick.ask) == (D("1.10005"), D("1.10015"))


def test_empty_optional_tick_fields_are_none(write, context) -> None:
    path = write("t.csv", "t,p,v\n2024-01-01T00:00:00,5,\n")
    feed = ReplayFeed(
        path=path, instrument="X", columns={"ts": "t", "last_price": "p", "volume": "v"}
    )
    (tick,) = feed.events(context.feed)
    assert tick.volume is None


def test_headerless_semicolon_file_by_position(write, context) -> None:
    path = write("p.txt", "2024-01-02 10:00:00;7,5;10.5\n2024-01-02 10:00:01;8;10.25\n")
    feed = ReplayFeed(
        path=path,
        instrument="X",
        delimiter=";",
        header=False,
        columns={"ts": 0, "last_price": 2},
    )
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D("10.5"), D("10.25")]
    assert ticks[1].ts == datetime(2024, 1, 2, 10, 0, 1, tzinfo=UTC)


def test_header_names_match_ignoring_case_and_spaces(write, context) -> None:
    path = write("h.csv", " Time , PRICE \n2024-01-01T00:00:00,3\n")
    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "time", "last_price": "Price"})
    assert [t.last_price for t in feed.events(context.feed)] == [D("3")]


def test_instrument_column_and_quoted_fields(write, context) -> None:
    path = write(
        "multi.csv",
        'sym,ts,px\n"AAA",2024-01-01T00:00:02,1\n"B,B",2024-01-01T00:00:01,"2.5"\nAAA,2024-01-01T00:00:03,3\n',
    )
    feed = ReplayFeed(path=path, columns={"instrument": "sym", "ts": "ts", "last_price": "px"})
    ticks = list(feed.events(context.feed))
    # Ordering is per instrument: B,B may be earlier than the AAA row before it.
    assert [(t.instrument, t.last_price) for t in ticks] == [
        ("AAA", D("1")),
        ("B,B", D("2.5")),
        ("AAA", D("3")),
    ]
    assert context.dead_letters == []


def test_custom_bars_with_date_and_time_and_strptime(write, context) -> None:
    path = write(
        "bars.csv",
        "d,t,o,h,l,c,v\n02.01.2024,10:00,100,101,99.5,100.5,1200\n02.01.2024,10:05,100.5,102,100,101,800\n",
    )
    feed = ReplayFeed(
        path=path,
        instrument="X",
        columns={
            "date": "d",
            "time": "t",
            "open": "o",
            "high": "h",
            "low": "l",
            "close": "c",
            "volume": "v",
        },
        timestamp_format="%d.%m.%Y %H:%M",
        bar_interval="5min",
    )
    bars = list(feed.events(context.feed))
    assert [type(b) for b in bars] == [Bar, Bar]
    assert bars[0].start == datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
    assert bars[0].end == bars[0].ts == datetime(2024, 1, 2, 10, 5, tzinfo=UTC)
    assert (bars[1].open, bars[1].high, bars[1].low, bars[1].close, bars[1].volume) == (
        D("100.5"),
        D("102"),
        D("100"),
        D("101"),
        D("800"),
    )


def test_bars_stamped_with_their_end(write, context) -> None:
    path = write("e.csv", "ts,o,h,l,c\n2024-01-01T10:00:00,1,2,1,2\n")
    feed = ReplayFeed(
        path=path,
        instrument="X",
        columns={"ts": "ts", "open": "o", "high": "h", "low": "l", "close": "c"},
        bar_interval=3600,
        bar_timestamp="end",
    )
    (bar,) = feed.events(context.feed)
    assert bar.start == datetime(2024, 1, 1, 9, tzinfo=UTC)
    assert bar.end == bar.ts == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert bar.volume == D("0")  # no volume column


def test_bars_with_start_and_end_columns(write, context) -> None:
    path = write(
        "se.csv",
        "from,to,o,h,l,c,v\n2024-01-01T00:00:00Z,2024-01-01T00:15:00Z,1,1,1,1,5\n",
    )
    columns = {
        "start": "from",
        "end": "to",
        "open": "o",
        "high": "h",
        "low": "l",
        "close": "c",
        "volume": "v",
    }
    (bar,) = ReplayFeed(path=path, instrument="X", columns=columns).events(context.feed)
    assert bar.end - bar.start == timedelta(minutes=15)
    assert bar.ts == datetime(2024, 1, 1, 0, 15, tzinfo=UTC)


def test_end_column_alone_with_interval(write, context) -> None:
    path = write("end.csv", "closed,o,h,l,c\n2024-01-01T00:15:00Z,1,1,1,1\n")
    columns = {"end": "closed", "open": "o", "high": "h", "low": "l", "close": "c"}
    (bar,) = ReplayFeed(path=path, instrument="X", columns=columns, bar_interval="15min").events(
        context.feed
    )
    assert bar.start == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timestamp_format", "text"),
    [
        ("unix", "1704067200.5"),
        ("unix_ms", "1704067200500"),
        (None, "2024-01-01T00:00:00.500Z"),
        ("iso", "2024-01-01T02:00:00.500+02:00"),
    ],
)
def test_timestamp_formats(write, context, timestamp_format, text) -> None:
    path = write("ts.csv", f"t,p\n{text},1\n")
    feed = ReplayFeed(
        path=path,
        instrument="X",
        columns={"ts": "t", "last_price": "p"},
        timestamp_format=timestamp_format,
        timezone="Asia/Tokyo",  # ignored: each of these names its own offset
    )
    (tick,) = feed.events(context.feed)
    assert tick.ts == datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert tick.ts.tzinfo is UTC


def test_naive_timestamps_are_read_in_the_timezone(write, context) -> None:
    path = write("tz.csv", "t,p\n2024-01-15T09:30:00,1\n2024-07-15T09:30:00,1\n")
    feed = ReplayFeed(
        path=path,
        instrument="X",
        columns={"ts": "t", "last_price": "p"},
        timezone="America/New_York",
    )
    winter, summer = feed.events(context.feed)
    assert winter.ts == datetime(2024, 1, 15, 14, 30, tzinfo=UTC)  # EST, UTC-5
    assert summer.ts == datetime(2024, 7, 15, 13, 30, tzinfo=UTC)  # EDT, UTC-4


def test_minute_preset_in_another_timezone(data_dir, context) -> None:
    feed = ReplayFeed(
        path=data_dir / "2006-01-02-volume-min-001.txt",
        format="minute",
        instrument="FUT",
        timezone="Europe/Berlin",
    )
    first = next(iter(feed.events(context.feed)))
    assert first.end == datetime(2006, 1, 2, 8, 1, tzinfo=UTC)  # 09:01 CET
    assert first.start == datetime(2006, 1, 2, 8, 0, tzinfo=UTC)


def test_daily_bar_across_a_daylight_saving_change_is_midnight_to_midnight(write, context) -> None:
    # 2021-03-14: New York moves from EST (UTC-5) to EDT (UTC-4); that day has 23 hours.
    path = write(
        "dst.csv", "day,o,h,l,c\n2021-03-13,1,1,1,1\n2021-03-14,1,1,1,1\n2021-03-15,1,1,1,1\n"
    )
    columns = {"date": "day", "open": "o", "high": "h", "low": "l", "close": "c"}
    feed = ReplayFeed(
        path=path, instrument="X", columns=columns, bar_interval="1d", timezone="America/New_York"
    )
    sat, sun, mon = feed.events(context.feed)
    assert sat.end == sun.start == datetime(2021, 3, 14, 5, tzinfo=UTC)
    assert sun.end == mon.start == datetime(2021, 3, 15, 4, tzinfo=UTC)
    assert sun.end - sun.start == timedelta(hours=23)
    assert context.dead_letters == []


def test_sub_day_interval_is_elapsed_time_across_a_change(write, context) -> None:
    # 2021-11-07 01:30 in New York happens twice; the first (EDT) is taken. One hour later in
    # elapsed time is 01:30 EST, i.e. 06:30 UTC.
    path = write("fall.csv", "t,o,h,l,c\n2021-11-07T01:30:00,1,1,1,1\n")
    columns = {"ts": "t", "open": "o", "high": "h", "low": "l", "close": "c"}
    feed = ReplayFeed(
        path=path, instrument="X", columns=columns, bar_interval="1h", timezone="America/New_York"
    )
    (bar,) = feed.events(context.feed)
    assert bar.start == datetime(2021, 11, 7, 5, 30, tzinfo=UTC)
    assert bar.end == datetime(2021, 11, 7, 6, 30, tzinfo=UTC)


def test_bom_crlf_and_blank_lines(write, context) -> None:
    path = write(
        "bom.csv", b"\xef\xbb\xbft,p\r\n2024-01-01T00:00:00,1\r\n\r\n2024-01-01T00:00:01,2\r\n\r\n"
    )
    feed = ReplayFeed(path=path, instrument="X", columns={"ts": "t", "last_price": "p"})
    ticks = list(feed.events(context.feed))
    assert [t.last_price for t in ticks] == [D("1"), D("2")]
    assert feed.rows_read == 2  # blank lines are not rows


def test_yahoo_weekly_bars_with_interval_override(write, context) -> None:
    path = write(
        "weekly.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-01,10,12,9,11,11,100\n2024-01-08,11,13,10,12,12,200\n",
    )
    feed = ReplayFeed(path=path, format="yahoo", instrument="X", bar_interval="1w")
    first, second = feed.events(context.feed)
    assert first.end == second.start == datetime(2024, 1, 8, tzinfo=UTC)


def test_replaying_twice_gives_the_same_prices_and_new_ids(data_dir, context) -> None:
    feed = ReplayFeed(path=data_dir / "bidask.csv", format="bidask", instrument="X")
    once = list(feed.events(context.feed))
    twice = list(feed.events(context.feed))
    assert [e.model_dump(exclude={"event_id"}) for e in once] == [
        e.model_dump(exclude={"event_id"}) for e in twice
    ]
    assert not {e.event_id for e in once} & {e.event_id for e in twice}
    assert feed.rows_read == 10


def test_yahoo_file_with_an_extra_column(write, context) -> None:
    path = write(
        "extra.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume,Dividends\n2024-01-02,10,12,9,11,11,100,0\n"
        "2024-01-03,10,12,9,11,11,100\n",
    )
    feed = ReplayFeed(path=path, format="yahoo", instrument="X")
    assert [bar.close for bar in feed.events(context.feed)] == [D("11")]
    (letter,) = context.dead_letters
    assert letter.reason == "row has 7 fields, expected 8"
