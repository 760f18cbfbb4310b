"""Parameter checking: every wrong combination is a clear ValueError at construction."""

from __future__ import annotations

import errno
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tradeloom.errors import ConfigError
from tradeloom.plugins import PluginManager
from tradeloom.settings import load_settings
from tradeloom_replay import ReplayFeed, ReplayFileNotFoundError, ReplayIsADirectoryError
from tradeloom_replay.formats import parse_interval
from tradeloom_replay.plugin import tradeloom_register_feeds

TICK_COLUMNS = {"ts": "t", "last_price": "p"}
BAR_COLUMNS = {"ts": "t", "open": "o", "high": "h", "low": "l", "close": "c"}


@pytest.fixture
def ticks(write) -> Path:
    return write("ticks.csv", "t,p\n2024-01-01T00:00:00,1\n")


@pytest.fixture
def bars(write) -> Path:
    return write("bars.csv", "t,o,h,l,c\n2024-01-01T00:00:00,1,1,1,1\n")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "path is required"),
        ({"path": "x", "paths": ["y"]}, "either path or paths, not both"),
        ({"paths": []}, "paths is empty"),
        ({"paths": {}}, "paths is empty"),
    ],
)
def test_path_combinations(params, message) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayFeed(**params, format="yahoo", instrument="X")


def test_missing_file_names_the_path_once(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ReplayFileNotFoundError) as caught:
        ReplayFeed(path=str(missing), format="yahoo", instrument="X")
    assert str(caught.value) == f"file not found: {missing}"
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOENT, str(missing))

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReplayFileNotFoundError) as caught:
        ReplayFeed(paths={"A": "nope.csv"}, format="yahoo")
    assert str(caught.value) == (
        f"file not found: nope.csv (resolved from the current directory {tmp_path})"
    )


def test_a_directory_is_not_a_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReplayIsADirectoryError) as caught:
        ReplayFeed(path="data", format="yahoo", instrument="X")
    assert str(caught.value) == (
        f"path is a directory, not a file: data (resolved from the current directory {tmp_path})"
    )
    assert isinstance(caught.value, IsADirectoryError)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, FileNotFoundError)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_device_is_not_a_file() -> None:
    with pytest.raises(ValueError) as caught:
        ReplayFeed(path="/dev/null", format="yahoo", instrument="X")
    assert str(caught.value) == "path is not a regular file: /dev/null"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"format": "csv"}, "unknown format 'csv'"),
        ({}, "format is required"),
        ({"format": "custom"}, "needs columns"),
        ({"format": "ticks", "columns": TICK_COLUMNS}, "columns is only for format = 'custom'"),
        ({"format": "ticks", "kind": "bar"}, "format 'ticks' gives ticks; kind='bar'"),
        ({"columns": TICK_COLUMNS, "kind": "candle"}, "kind must be 'bar' or 'tick'"),
        ({"columns": {"ts": "t", "px": "p"}}, "set kind"),
        (
            {"columns": {"ts": "t", "last_price": "p", "colour": "c"}},
            "unknown field.*'colour'.*known fields",
        ),
        ({"columns": {"last_price": "p"}}, "ticks need one time column set.*found none"),
        ({"columns": {"time": "t", "last_price": "p"}}, "found time"),
        ({"columns": {"ts": "t", "bid": "p"}}, "both bid and ask"),
        (
            {"columns": {"ts": "t", "close": "p"}, "bar_interval": "1d"},
            "missing \\['open', 'high', 'low'\\]",
        ),
        ({"columns": {"ts": "t", "last_price": True}}, "columns.last_price must be a column name"),
        ({"columns": {"ts": "t", "last_price": " "}}, "columns.last_price is empty"),
        ({"columns": {"ts": "t", "last_price": -1}}, "must be 0 or more"),
        ({"columns": TICK_COLUMNS, "on_error": "ignore"}, "on_error must be 'skip' or 'stop'"),
        ({"columns": TICK_COLUMNS, "delimiter": ";;"}, "delimiter must be one character"),
        ({"columns": TICK_COLUMNS, "encoding": "klingon"}, "unknown encoding"),
        ({"columns": TICK_COLUMNS, "encoding": "rot13"}, "'rot13' is not a text encoding"),
        ({"columns": TICK_COLUMNS, "encoding": "base64"}, "'base64' is not a text encoding"),
        ({"columns": TICK_COLUMNS, "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"columns": TICK_COLUMNS, "timestamp_format": "YYYY-MM-DD"}, "not a strptime pattern"),
        (
            {"columns": TICK_COLUMNS, "timestamp_format": "%Q"},
            "timestamp_format '%Q' is not a usable strptime pattern: 'Q' is a bad directive",
        ),
        ({"columns": TICK_COLUMNS, "timestamp_format": "%s"}, "'s' is a bad directive.*'unix'"),
        ({"columns": TICK_COLUMNS, "timestamp_format": "%Y-%m-%d %"}, "stray %"),
        ({"columns": TICK_COLUMNS, "timestamp_format": "%G-%m-%d"}, "ISO year directive"),
        (
            # strptime reads a zone name and drops it: the time would be the timezone's.
            {
                "columns": TICK_COLUMNS,
                "timestamp_format": "%Y-%m-%d %H:%M:%S %Z",
                "timezone": "Europe/Berlin",
            },
            "uses %Z, which Python's strptime reads but drops",
        ),
        ({"format": "bidask", "timestamp_format": "%d/%m/%Y %Q"}, "'Q' is a bad directive"),
        ({"columns": TICK_COLUMNS, "bar_interval": "1d"}, "bar_interval applies to bars only"),
        ({"columns": TICK_COLUMNS, "bar_timestamp": "end"}, "bar_timestamp applies to bars only"),
        ({"columns": TICK_COLUMNS, "price_column": "adj_close"}, "applies to bars only"),
        ({"columns": TICK_COLUMNS, "price_column": "vwap"}, "price_column must be"),
        ({"columns": TICK_COLUMNS, "header": "yes"}, "header must be true or false"),
        (
            {"columns": {"ts": "t", "last_price": "price"}},
            "no column 'price' .*header has 't', 'p'",
        ),
        ({"columns": TICK_COLUMNS, "header": False}, "header = false, so columns must be 0-based"),
        (
            {"format": "bidask", "header": False},
            "format 'bidask' finds its columns by the header's names, so it needs header = true",
        ),
    ],
)
def test_wrong_tick_parameters(ticks, params, message) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayFeed(path=ticks, instrument="X", **params)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "bar_interval is required"),
        ({"bar_interval": "1m"}, "'m' is ambiguous"),
        ({"bar_interval": "soon"}, "is not a duration"),
        ({"bar_interval": "\u0661d"}, "is not a duration"),  # an Arabic-Indic digit one
        ({"bar_interval": "1_0min"}, "is not a duration"),
        ({"bar_interval": 0}, "longer than zero"),
        ({"bar_interval": 10**20}, "is too long"),
        ({"bar_interval": "100000000000w"}, "is too long"),
        ({"bar_interval": "1d", "bar_timestamp": "middle"}, "bar_timestamp must be"),
        ({"bar_interval": "1d", "price_column": "adj_close"}, "map adj_close"),
    ],
)
def test_wrong_bar_parameters(bars, params, message) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayFeed(path=bars, instrument="X", columns=BAR_COLUMNS, **params)


def test_start_and_end_columns_take_no_interval(write) -> None:
    path = write("se.csv", "a,b,o,h,l,c\n")
    columns = {"start": "a", "end": "b", "open": "o", "high": "h", "low": "l", "close": "c"}
    with pytest.raises(ValueError, match="bar_interval is not used when columns map both"):
        ReplayFeed(path=path, instrument="X", columns=columns, bar_interval="1d")
    columns.pop("end")
    with pytest.raises(ValueError, match="contradicts the mapped column 'start'"):
        ReplayFeed(
            path=path, instrument="X", columns=columns, bar_interval="1d", bar_timestamp="end"
        )


def test_instrument_rules(ticks, write) -> None:
    with pytest.raises(ValueError, match="instrument is required"):
        ReplayFeed(path=ticks, columns=TICK_COLUMNS)
    with pytest.raises(ValueError, match="instrument must be a non-empty name"):
        ReplayFeed(path=ticks, columns=TICK_COLUMNS, instrument="  ")
    with pytest.raises(ValueError, match="longer than 200"):
        ReplayFeed(path=ticks, columns=TICK_COLUMNS, instrument="X" * 201)
    # The events are built without a second validation: the name is checked here, as an
    # event would check it (a zero-width space, a tab).
    for unprintable in ("AB\u200bC", "A\tB"):
        with pytest.raises(ValueError, match="has unprintable characters"):
            ReplayFeed(path=ticks, columns=TICK_COLUMNS, instrument=unprintable)
        with pytest.raises(ValueError, match="has unprintable characters"):
            ReplayFeed(paths={unprintable: ticks}, columns=TICK_COLUMNS)
    with_column = {"instrument": "t", **TICK_COLUMNS}
    with pytest.raises(ValueError, match="either instrument or an instrument column"):
        ReplayFeed(path=ticks, columns=with_column, instrument="X")
    with pytest.raises(ValueError, match="paths maps instruments to files"):
        ReplayFeed(paths={"A": ticks}, columns=TICK_COLUMNS, instrument="X")


def test_header_mismatch_names_the_file(write) -> None:
    path = write("wrong.csv", "Day,Open,High,Low,Close,Adj Close,Volume\n")
    with pytest.raises(ValueError, match=r"wrong\.csv: no column 'Date' \(for date\)"):
        ReplayFeed(path=path, format="yahoo", instrument="X")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "Date,Open,High,Low,Close,Adj Close,Volume,Close",
            "dup.csv: column 'Close' (for close) is in the header 2 times (fields 5, 8): which "
            "one is meant? Give its 0-based position instead of its name",
        ),
        (
            "Date,Open,High,Low,CLOSE,Adj Close,Volume,close",
            "dup.csv: column 'Close' (for close) matches 'CLOSE', 'close' in the header when "
            "case is ignored: write it exactly as one of them",
        ),
    ],
)
def test_a_column_named_twice_in_the_header_is_refused_not_guessed(
    write, header: str, message: str
) -> None:
    # The first of the two was taken, silently.
    path = write("dup.csv", header + "\n")
    with pytest.raises(ValueError) as caught:
        ReplayFeed(path=path, format="yahoo", instrument="X")
    assert str(caught.value) == f"{path}: {message.removeprefix('dup.csv: ')}"


@pytest.mark.parametrize("bom", [True, False])
def test_a_utf16_file_read_as_utf8_says_so(tmp_path, bom: bool) -> None:
    text = "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,1,2,1,2,2,10\n"
    path = tmp_path / "wide.csv"
    path.write_bytes(text.encode("utf-16" if bom else "utf-16-le"))
    with pytest.raises(ValueError) as caught:
        ReplayFeed(path=path, format="yahoo", instrument="X")
    assert str(caught.value).endswith(
        "(the header holds NUL characters: is the file UTF-16? set encoding = 'utf-16')"
    )
    if bom:
        assert ReplayFeed(path=path, format="yahoo", instrument="X", encoding="utf-16")
    else:
        with pytest.raises(ValueError) as caught:
            ReplayFeed(path=path, format="yahoo", instrument="X", encoding="utf-16")
        assert str(caught.value) == (
            f"{path}: cannot be read as utf-16: UTF-16 stream does not start with BOM; without "
            "a byte-order mark, name the byte order: encoding = 'utf-16-le' (or 'utf-16-be')"
        )
        assert ReplayFeed(path=path, format="yahoo", instrument="X", encoding="utf-16-le")


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_a_header_split_on_the_wrong_character_suggests_the_delimiter(write, delimiter) -> None:
    header = delimiter.join(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"])
    path = write("semicolons.csv", header + "\n")
    with pytest.raises(ValueError) as caught:
        ReplayFeed(path=path, format="yahoo", instrument="X")
    assert str(caught.value).endswith(
        f"the header has {header!r} (is the file delimited by {delimiter!r}? set delimiter = "
        f"{delimiter!r})"
    )


def test_empty_file(write) -> None:
    path = write("empty.csv", "")
    with pytest.raises(ValueError, match="the file is empty"):
        ReplayFeed(path=path, format="yahoo", instrument="X")


def test_header_only_file_replays_nothing(write, context) -> None:
    path = write("header.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n")
    feed = ReplayFeed(path=path, format="yahoo", instrument="X")
    assert list(feed.events(context.feed)) == []
    assert feed.rows_read == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("5min", timedelta(minutes=5)),
        ("1 hour", timedelta(hours=1)),
        ("30s", timedelta(seconds=30)),
        ("2W", timedelta(weeks=2)),
        (60, timedelta(minutes=1)),
        ("86400", timedelta(days=1)),  # seconds as text, as an environment variable gives them
        (" 300 ", timedelta(minutes=5)),
        (timedelta(hours=4), timedelta(hours=4)),
    ],
)
def test_interval_spellings(text, expected) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize("text", ["0", "-60", "1.5", "\u0661\u0662"])
def test_interval_texts_that_are_not_a_whole_number_of_seconds(text) -> None:
    with pytest.raises(ValueError, match="bar_interval"):
        parse_interval(text)


def test_a_bar_interval_in_seconds_from_the_environment(write, tmp_path, monkeypatch) -> None:
    path = write("bars.csv", "t,o,h,l,c\n2024-01-01T00:00:00,1,1,1,1\n")
    config = tmp_path / "cfg.toml"
    config.write_text(
        f"""[feed]
name = "replay"
[feed.params]
path = "{path}"
instrument = "X"
columns = {{ ts = "t", open = "o", high = "h", low = "l", close = "c" }}
bar_interval = "1h"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__BAR_INTERVAL", "86400")
    settings = load_settings(config)
    assert settings.feed is not None
    manager = PluginManager().load(autoload=False, modules=["tradeloom_replay.plugin"])
    feed = manager.create("feed", "replay", settings.feed.params)
    assert isinstance(feed, ReplayFeed)
    assert feed.timing is not None and feed.timing.interval == timedelta(days=1)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("%m/%d/%Y %H:%M:%S", "01/02/2024 10:00:00"),
        ("%d.%m.%Y %H:%M:%S.%f", "02.01.2024 10:00:00.5"),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-01-02T11:00:00+0100"),
        ("%d %b %Y %I:%M %p %Z", "02 Jan 2024 10:00 AM UTC"),
        ("%G-W%V-%u %H:%M", "2024-W01-2 10:00"),
    ],
)
def test_usable_strptime_patterns_are_accepted(write, context, pattern, text) -> None:
    path = write("stamps.csv", f"t;p\n{text};1\n")
    feed = ReplayFeed(
        path=path, instrument="X", columns=TICK_COLUMNS, delimiter=";", timestamp_format=pattern
    )
    (tick,) = feed.events(context.feed)
    assert tick.ts.isoformat() == "2024-01-02T10:00:00" + (
        ".500000+00:00" if "%f" in pattern else "+00:00"
    )


def test_registered_as_replay_feed() -> None:
    assert tradeloom_register_feeds() == {"replay": ReplayFeed}
    names = {ep.name: ep.value for ep in entry_points(group="tradeloom")}
    assert names["replay"] == "tradeloom_replay.plugin"


def test_built_by_the_plugin_manager_from_toml_params(data_dir, context) -> None:
    manager = PluginManager().load(autoload=False, modules=["tradeloom_replay.plugin"])
    feed = manager.create(
        "feed",
        "replay",
        {"path": str(data_dir / "bidask.csv"), "format": "bidask", "instrument": "AUDUSD"},
    )
    assert isinstance(feed, ReplayFeed)
    assert len(list(feed.events(context.feed))) == 10
    with pytest.raises(ConfigError, match="instrument is required"):
        manager.create("feed", "replay", {"path": str(data_dir / "bidask.csv"), "format": "bidask"})
    with pytest.raises(ConfigError, match="timestamp_format '%Q' is not a usable"):
        manager.create(
            "feed",
            "replay",
            {
                "path": str(data_dir / "bidask.csv"),
                "format": "bidask",
                "instrument": "AUDUSD",
                "timestamp_format": "%Q",
            },
        )
    with pytest.raises(ConfigError, match="file not found"):
        manager.create(
            "feed", "replay", {"path": "no/such.csv", "format": "bidask", "instrument": "X"}
        )


def test_close_stops_a_running_replay(data_dir, context) -> None:
    feed = ReplayFeed(path=data_dir / "ticksample.csv", format="ticks", instrument="X")
    events = feed.events(context.feed)
    next(events)
    feed.close()
    assert list(events) == []
    assert feed.rows_read == 1
