"""Every sample file in shared/data replays completely, with exact first and last values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from tradeloom.events import Bar, MarketTick
from tradeloom_replay import ReplayFeed

D = Decimal


def data_rows(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for line in handle if line.strip()) - 1  # minus the header


def replay(feed: ReplayFeed, context) -> list:
    events = list(feed.events(context.feed))
    assert context.dead_letters == []
    assert feed.bad_rows == 0
    assert feed.rows_read == len(events) == feed.events_emitted
    return events


def test_orcl_daily_bars(data_dir: Path, context) -> None:
    path = data_dir / "orcl-1995-2014.txt"
    feed = ReplayFeed(path=str(path), format="yahoo", instrument="ORCL")
    bars = replay(feed, context)

    assert len(bars) == 5036 == data_rows(path)
    assert all(isinstance(bar, Bar) for bar in bars)
    first, last = bars[0], bars[-1]
    # 1995-01-03,2.179012,2.191358,2.117284,2.117284,1.883304,36301200
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        D("2.179012"),
        D("2.191358"),
        D("2.117284"),
        D("2.117284"),
        D("36301200"),
    )
    assert str(first.open) == "2.179012"
    assert first.start == datetime(1995, 1, 3, tzinfo=UTC)
    assert first.end == first.ts == datetime(1995, 1, 4, tzinfo=UTC)
    assert first.instrument == "ORCL"
    # 2014-12-31,45.450001,45.560001,44.970001,44.970001,42.303135,13269200
    assert (last.open, last.high, last.low, last.close, last.volume) == (
        D("45.450001"),
        D("45.560001"),
        D("44.970001"),
        D("44.970001"),
        D("13269200"),
    )
    assert last.start == datetime(2014, 12, 31, tzinfo=UTC)
    assert last.ts == datetime(2015, 1, 1, tzinfo=UTC)
    assert [bar.ts for bar in bars] == sorted(bar.ts for bar in bars)
    assert len({bar.event_id for bar in bars}) == len(bars)


@pytest.mark.parametrize(
    ("name", "rows", "first_open", "last_close"),
    [
        ("nvda-1999-2014.txt", 4012, "1.750000", "20.049999"),
        ("yhoo-1996-2014.txt", 4713, "1.052083", "50.509998"),
    ],
)
def test_other_yahoo_files(
    data_dir: Path, context, name: str, rows: int, first_open: str, last_close: str
) -> None:
    path = data_dir / name
    bars = replay(ReplayFeed(path=path, format="yahoo", instrument="X"), context)
    assert len(bars) == rows == data_rows(path)
    assert str(bars[0].open) == first_open
    assert str(bars[-1].close) == last_close


def test_orcl_adjusted_close(data_dir: Path, context) -> None:
    feed = ReplayFeed(
        path=data_dir / "orcl-1995-2014.txt",
        format="yahoo",
        instrument="ORCL",
        price_column="adj_close",
    )
    bars = replay(feed, context)
    assert len(bars) == 5036
    first = bars[0]
    ratio = Fraction("1.883304") / Fraction("2.117284")
    # Close is the file's Adj Close exactly; low equals close in this row, so it is exact too.
    assert first.close == D("1.883304")
    assert first.low == D("1.883304")
    for value, raw in ((first.open, "2.179012"), (first.high, "2.191358")):
        assert abs(Fraction(value) - Fraction(raw) * ratio) < Fraction(1, 10**26)
    assert first.volume == D("36301200")  # volume is not adjusted
    last = bars[-1]
    assert last.close == D("42.303135")
    assert abs(
        Fraction(last.open) - Fraction("45.450001") * Fraction("42.303135") / Fraction("44.970001")
    ) < Fraction(1, 10**24)


def test_minute_bars_are_stamped_with_their_end(data_dir: Path, context) -> None:
    path = data_dir / "2006-01-02-volume-min-001.txt"
    feed = ReplayFeed(path=path, format="minute", instrument="FUT")
    bars = replay(feed, context)

    assert len(bars) == 30889 == data_rows(path)
    first, last = bars[0], bars[-1]
    # 2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0
    assert first.start == datetime(2006, 1, 2, 9, 0, tzinfo=UTC)
    assert first.end == first.ts == datetime(2006, 1, 2, 9, 1, tzinfo=UTC)
    assert [str(v) for v in (first.open, first.high, first.low, first.close)] == [
        "3602.00",
        "3603.00",
        "3597.00",
        "3599.00",
    ]
    assert first.volume == D("5699")
    # 2006-02-27,22:00:00,3840.00,3840.00,3838.00,3838.00,327,0
    assert last.end == datetime(2006, 2, 27, 22, 0, tzinfo=UTC)
    assert last.start == datetime(2006, 2, 27, 21, 59, tzinfo=UTC)
    assert (last.open, last.high, last.low, last.close, last.volume) == (
        D("3840.00"),
        D("3840.00"),
        D("3838.00"),
        D("3838.00"),
        D("327"),
    )
    assert all(bar.end - bar.start == timedelta(minutes=1) for bar in bars)
    # The session is 09:00-22:00: stamps run 09:01..22:00, so no bar starts at 22:00.
    assert min(bar.end.time() for bar in bars).isoformat() == "09:01:00"
    assert max(bar.end.time() for bar in bars).isoformat() == "22:00:00"


@pytest.mark.parametrize("with_header", [True, False])
def test_a_minute_file_without_its_header_is_warned_about(
    data_dir: Path, context, tmp_path: Path, caplog: pytest.LogCaptureFixture, with_header: bool
) -> None:
    # The preset reads columns by position and never looks at the header line: a copy
    # without one lost its first bar to it, unnoticed.
    lines = (data_dir / "2006-01-02-volume-min-001.txt").read_text().splitlines(keepends=True)
    path = tmp_path / "minutes.txt"
    path.write_text("".join(lines[:4] if with_header else lines[1:4]))
    with caplog.at_level("WARNING", logger="test.replay"):
        bars = replay(ReplayFeed(path=path, format="minute", instrument="FUT"), context)
    warned = [r.getMessage() for r in caplog.records if "reads as a data row" in r.getMessage()]
    if with_header:
        assert len(bars) == 3 and warned == []
    else:
        assert len(bars) == 2  # as the option says; the warning says so
        assert warned == [
            f"{path}: its first line (2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0) "
            "reads as a data row, but header = true skips it as the header; set header = false "
            "if the file has none"
        ]


def test_ticksample(data_dir: Path, context) -> None:
    path = data_dir / "ticksample.csv"
    ticks = replay(ReplayFeed(path=path, format="ticks", instrument="FUT"), context)

    assert len(ticks) == 135 == data_rows(path)
    assert all(isinstance(tick, MarketTick) for tick in ticks)
    first, last = ticks[0], ticks[-1]
    # 2015-09-23T20:57:42.146,3067.00,3067.00,3067.00,3067.00,180,0
    assert first.ts == datetime(2015, 9, 23, 20, 57, 42, 146000, tzinfo=UTC)
    assert str(first.last_price) == "3067.00"
    assert first.volume == D("180")
    assert first.bid is None and first.ask is None
    # 2015-09-23T21:00:00.238,3069.00,...,1,0
    assert last.ts == datetime(2015, 9, 23, 21, 0, 0, 238000, tzinfo=UTC)
    assert last.last_price == D("3069.00")
    assert last.volume == D("1")


def test_bidask_mid(data_dir: Path, context) -> None:
    path = data_dir / "bidask.csv"
    ticks = replay(ReplayFeed(path=path, format="bidask", instrument="AUDUSD"), context)

    assert len(ticks) == 10 == data_rows(path)
    first, last = ticks[0], ticks[-1]
    # 02/03/2010 16:53:50,0.5346,0.5347 (month/day/year)
    assert first.ts == datetime(2010, 2, 3, 16, 53, 50, tzinfo=UTC)
    assert (first.bid, first.ask) == (D("0.5346"), D("0.5347"))
    assert str(first.last_price) == "0.53465"
    # 02/03/2010 16:53:59,0.5684,0.5688
    assert last.ts == datetime(2010, 2, 3, 16, 53, 59, tzinfo=UTC)
    assert str(last.last_price) == "0.5686"
    for tick in ticks:
        assert tick.last_price * 2 == tick.bid + tick.ask


def test_timezone_moves_daily_bars_to_local_midnight(data_dir: Path, context) -> None:
    feed = ReplayFeed(
        path=data_dir / "orcl-1995-2014.txt",
        format="yahoo",
        instrument="ORCL",
        timezone="America/New_York",
    )
    bars = replay(feed, context)
    assert bars[0].start == datetime(1995, 1, 3, 5, tzinfo=UTC)  # EST midnight
    assert bars[0].end == datetime(1995, 1, 4, 5, tzinfo=UTC)
    assert bars[-1].start == datetime(2014, 12, 31, 5, tzinfo=UTC)
    # A summer day is an EDT day: midnight is 04:00 UTC.
    july = next(bar for bar in bars if bar.start.date().isoformat() == "2014-07-01")
    assert july.start == datetime(2014, 7, 1, 4, tzinfo=UTC)
