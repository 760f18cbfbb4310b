"""The ``replay`` feed: market data from CSV (or Parquet) files, streamed a block at a time."""

from __future__ import annotations

import codecs
import errno
import hashlib
import heapq
import json
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradeloom.components import DeadLetter, Feed, FeedContext, mint_ids
from tradeloom.errors import BadInputError
from tradeloom.events import MarketEvent
from tradeloom_replay.construct import bar_builder, tick_builder
from tradeloom_replay.formats import (
    BAR_FIELDS,
    COMMON_FIELDS,
    FORMATS,
    PRESETS,
    TICK_FIELDS,
    TIME_FIELDS,
    BarTimestamp,
    Kind,
    parse_interval,
)
from tradeloom_replay.pacing import pacing
from tradeloom_replay.rows import (
    MAX_INSTRUMENT_LENGTH,
    TICK_ROW_FIELDS,
    BadRow,
    BarTiming,
    Layout,
    RowParser,
    TimeReader,
    resolve_layout,
)
from tradeloom_replay.sources import (
    CsvSource,
    ParquetSource,
    check_not_compressed,
    is_parquet,
    parquet_time_columns,
    read_csv_header,
    read_parquet_header,
    require_pyarrow,
)

#: Bad rows logged one by one at DEBUG (the pipeline logs the first bad input of a run as
#: warnings, whatever its source); each file with bad rows logs a summary as a warning.
LOGGED_BAD_ROWS = 10
#: Event ids asked of the id generator at a time (when it can mint several at once).
IDS_MINTED_AT_ONCE = 128

_TICK_TIMES = tuple(map(frozenset, (["ts"], ["date"], ["date", "time"])))
_BAR_TIMES = _TICK_TIMES + tuple(map(frozenset, (["start"], ["end"], ["start", "end"])))
#: Written and read back with a strptime pattern to check it.
_SAMPLE_TIME = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class _OneSentence:
    # An OSError made with (errno, message, filename) prints "[Errno 2] message: 'filename'";
    # the message already names the file.
    strerror: str

    def __str__(self) -> str:
        return self.strerror


class ReplayFileNotFoundError(_OneSentence, FileNotFoundError, ValueError):
    """A file to replay does not exist. Also a ValueError: a configuration mistake."""


class ReplayIsADirectoryError(_OneSentence, IsADirectoryError, ValueError):
    """A path to replay is a directory. Also a ValueError: a configuration mistake."""


@dataclass(frozen=True)
class _File:
    path: Path
    instrument: str | None


class ReplayFeed(Feed):
    """Replays market data files as :class:`~tradeloom.events.Bar` or
    :class:`~tradeloom.events.MarketTick` events, in time order.

    Files are streamed a block at a time, so their size does not matter. Several files are
    merged by timestamp (ties keep the order the files were given in). A bar's ``ts`` is its
    ``end``, the moment it is complete, so a backtest never sees a bar before it could have.

    Rows that cannot become an event (a price that is not a positive finite number, a missing
    column, an unreadable date, high below low, a row earlier than the one before it for the
    same instrument) are reported to ``ctx.report_bad_input`` and skipped
    (``on_error="skip"``), or stop the replay with :class:`~tradeloom.errors.BadInputError`
    (``on_error="stop"``). ``rows_read``, ``bad_rows`` and ``events_emitted`` count the last
    replay. See docs/replay-feed.md for every parameter.
    """

    replays_from_start = True  # paced too, when events() is an async iterator

    def __init__(
        self,
        path: str | Path | list[str | Path] | None = None,
        *,
        paths: list[str | Path] | dict[str, str | Path] | None = None,
        instrument: str | None = None,
        kind: Literal["bar", "tick"] | None = None,
        format: Literal["yahoo", "minute", "ticks", "bidask", "custom"] | None = None,
        columns: dict[str, str | int] | None = None,
        price_column: Literal["close", "adj_close"] = "close",
        timestamp_format: str | None = None,
        timezone: str = "UTC",
        bar_interval: str | int | timedelta | None = None,
        bar_timestamp: Literal["start", "end"] | None = None,
        delimiter: str = ",",
        header: bool = True,
        encoding: str = "utf-8-sig",
        on_error: Literal["skip", "stop"] = "skip",
        speed: float | None = None,
        max_wait_seconds: float | None = None,
    ) -> None:
        if on_error not in ("skip", "stop"):
            raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
        self.on_error = on_error
        self.delimiter = _check_delimiter(delimiter)
        self.encoding = _check_encoding(encoding)
        if not isinstance(header, bool):
            raise ValueError(f"header must be true or false, got {header!r}")
        self.header = header
        self.zone = _zone(timezone)
        self.timezone = timezone
        self.pacing = pacing(speed, max_wait_seconds)

        self.format = _check_format(format, columns)
        self.kind, self.columns, self.row_width, labels = self._layout_spec(kind, columns)
        if not header and self.format in PRESETS:
            by_name = sorted(name for name, at in self.columns.items() if isinstance(at, str))
            if by_name:
                raise ValueError(
                    f"format {self.format!r} finds its columns by the header's names, so it "
                    "needs header = true (for a file without a header, use format = 'custom' "
                    "with columns as 0-based positions)"
                )
        preset = PRESETS.get(self.format)
        self.timestamp_format = _check_timestamp_format(
            timestamp_format
            if timestamp_format is not None
            else (preset.timestamp_format if preset else None),
            self.zone,
        )
        self._labels = labels
        self.price_column = self._check_price_column(price_column)
        self.timing = self._bar_timing(bar_interval, bar_timestamp)
        self.files = self._files(path, paths, instrument)

        # Read every header now, so a mapping that does not fit a file is a configuration
        # error at start-up rather than a failure halfway through a backtest.
        for file in self.files:
            self._file_timestamp_format(file, self._layout(file))

        self.bad_rows = 0
        self.events_emitted = 0
        self._running: weakref.WeakSet[Iterator[MarketEvent]] = weakref.WeakSet()

    def replay_identity(self) -> str:
        """The files (where they are, and a digest of their first 64 KiB: a file written anew
        at the same path is another) and how their rows become events; not the pacing."""
        files = [
            {
                "path": str(file.path.resolve()),
                "instrument": file.instrument,
                "head": _head_digest(file.path),
            }
            for file in self.files
        ]
        reading = {
            "kind": self.kind,
            "format": self.format,
            "columns": self.columns,
            "price_column": self.price_column,
            "timestamp_format": self.timestamp_format,
            "timezone": self.timezone,
            "timing": repr(self.timing),
            "delimiter": self.delimiter,
            "header": self.header,
            "encoding": self.encoding,
            "on_error": self.on_error,
        }
        return json.dumps({"files": files, "reading": reading}, sort_keys=True, default=str)

    @property
    def rows_read(self) -> int:
        """Rows of the last replay handled so far: made into events or reported as bad."""
        return self.events_emitted + self.bad_rows

    # ----------------------------------------------------------------------------------------
    # Configuration

    def _layout_spec(
        self, kind: str | None, columns: dict[str, str | int] | None
    ) -> tuple[Kind, dict[str, str | int], int | None, dict[int, str]]:
        if kind not in (None, "bar", "tick"):
            raise ValueError(f"kind must be 'bar' or 'tick', got {kind!r}")
        preset = PRESETS.get(self.format)
        if preset is not None:
            if kind is not None and kind != preset.kind:
                raise ValueError(
                    f"format {self.format!r} gives {preset.kind}s; kind={kind!r} does not fit it "
                    "(use format = 'custom' with columns to read the file differently)"
                )
            return preset.kind, dict(preset.columns), preset.row_width, dict(preset.labels)
        assert columns is not None
        mapping = _check_columns(columns)
        resolved_kind: Kind
        if kind is not None:
            resolved_kind = kind  # type: ignore[assignment]
        elif "last_price" in mapping or "bid" in mapping or "ask" in mapping:
            resolved_kind = "tick"
        elif "close" in mapping:
            resolved_kind = "bar"
        else:
            raise ValueError(
                "set kind = 'bar' or 'tick': columns map neither last_price/bid/ask nor close"
            )
        _check_custom_fields(resolved_kind, mapping)
        return resolved_kind, mapping, None, {}

    def _check_price_column(self, price_column: str) -> str:
        if price_column not in ("close", "adj_close"):
            raise ValueError(f"price_column must be 'close' or 'adj_close', got {price_column!r}")
        if price_column == "adj_close":
            if self.kind != "bar":
                raise ValueError("price_column = 'adj_close' applies to bars only")
            if "adj_close" not in self.columns:
                raise ValueError(
                    "price_column = 'adj_close' needs an adjusted close column: "
                    "map adj_close in columns"
                )
        return price_column

    def _bar_timing(
        self, bar_interval: str | int | timedelta | None, bar_timestamp: str | None
    ) -> BarTiming | None:
        if bar_timestamp not in (None, "start", "end"):
            raise ValueError(f"bar_timestamp must be 'start' or 'end', got {bar_timestamp!r}")
        if self.kind == "tick":
            for name, value in (("bar_interval", bar_interval), ("bar_timestamp", bar_timestamp)):
                if value is not None:
                    raise ValueError(f"{name} applies to bars only; this feed reads ticks")
            return None
        times = TIME_FIELDS.intersection(self.columns)
        if times == {"start", "end"}:
            for name, value in (("bar_interval", bar_interval), ("bar_timestamp", bar_timestamp)):
                if value is not None:
                    raise ValueError(f"{name} is not used when columns map both start and end")
            return None
        marks: BarTimestamp
        if times in ({"start"}, {"end"}):
            marks = "start" if times == {"start"} else "end"
            if bar_timestamp not in (None, marks):
                raise ValueError(
                    f"bar_timestamp = {bar_timestamp!r} contradicts the mapped column {marks!r}"
                )
        else:
            preset = PRESETS.get(self.format)
            default_marks: BarTimestamp = preset.bar_timestamp if preset else "start"
            marks = bar_timestamp or default_marks  # type: ignore[assignment]
        if bar_interval is not None:
            interval = parse_interval(bar_interval)
        else:
            preset = PRESETS.get(self.format)
            if preset is None or preset.bar_interval is None:
                raise ValueError(
                    "bar_interval is required for bars that carry one timestamp "
                    "(e.g. '1d', '5min', '1h' or a number of seconds)"
                )
            interval = preset.bar_interval
        return BarTiming(interval=interval, marks=marks)

    def _files(
        self,
        path: str | Path | list[str | Path] | None,
        paths: list[str | Path] | dict[str, str | Path] | None,
        instrument: str | None,
    ) -> list[_File]:
        if path is not None and paths is not None:
            raise ValueError("give either path or paths, not both")
        if path is None and paths is None:
            raise ValueError("path is required: the file (or list of files) to replay")
        has_column = "instrument" in self.columns
        if instrument is not None:
            instrument = _check_instrument(instrument)
            if has_column:
                raise ValueError(
                    "give either instrument or an instrument column in columns, not both"
                )
        if isinstance(paths, dict):
            if not paths:
                raise ValueError("paths is empty")
            if instrument is not None or has_column:
                raise ValueError(
                    "paths maps instruments to files, so instrument and an instrument "
                    "column cannot be used with it"
                )
            files = [_File(_path(p), _check_instrument(name)) for name, p in paths.items()]
        else:
            given = paths if paths is not None else path
            listed = list(given) if isinstance(given, list | tuple) else [given]
            if not listed:
                raise ValueError("paths is empty")
            if instrument is None and not has_column:
                raise ValueError(
                    "instrument is required (the name the file's prices belong to), unless "
                    "columns maps an instrument column or paths maps instruments to files"
                )
            files = [_File(_path(p), instrument) for p in listed]
        for file in files:
            _check_is_file(file.path)
            if is_parquet(file.path):
                require_pyarrow()
            else:
                check_not_compressed(file.path)
        return files

    def _layout(self, file: _File) -> Layout:
        source = str(file.path)
        if is_parquet(file.path):
            header: list[str] | None = read_parquet_header(file.path)
        elif self.header:
            header = read_csv_header(file.path, delimiter=self.delimiter, encoding=self.encoding)
        else:
            header = None
        columns = self.columns
        if (
            self.price_column != "adj_close"
            and self.format in PRESETS
            and header is not None
            and str(columns.get("adj_close", "")).lower() not in {h.lower() for h in header}
        ):
            # A preset's adjusted close is read only for price_column = "adj_close": a file
            # without that column (Yahoo's newer downloads) is read on its close.
            columns = {name: at for name, at in columns.items() if name != "adj_close"}
        return resolve_layout(
            columns, header, source=source, row_width=self.row_width, labels=self._labels
        )

    def _file_timestamp_format(self, file: _File, layout: Layout) -> str | None:
        """How to read the file's times: ``timestamp_format``, except for Parquet timestamp,
        date and time columns, whose values are times already (read from their ISO text)."""
        timestamp_format = self.timestamp_format
        if timestamp_format in (None, "iso") or not is_parquet(file.path):
            return timestamp_format
        used = {at for name, at in layout.index.items() if name in TIME_FIELDS}
        typed = used & parquet_time_columns(file.path)
        if not typed:
            return timestamp_format
        if typed == used:
            return None
        names = ", ".join(repr(layout.labels[at]) for at in sorted(typed))
        others = ", ".join(repr(layout.labels[at]) for at in sorted(used - typed))
        raise ValueError(
            f"{file.path}: {names} hold Parquet times but {others} text, and the two cannot be "
            f"read together with timestamp_format {timestamp_format!r}: store them alike "
            "(both as text, or as one timestamp column)"
        )

    # ----------------------------------------------------------------------------------------
    # Replay

    def events(self, ctx: FeedContext) -> Iterator[MarketEvent] | AsyncIterator[MarketEvent]:
        """Stream the files' rows as events, merged in time order. Counters restart at zero.
        A plain iterator, or with ``speed`` an async one that waits between the events."""
        self.bad_rows = 0
        self.events_emitted = 0
        replay = self._replay(ctx)
        self._running.add(replay)
        if self.pacing is None:
            return replay
        return self.pacing.paced(replay, unsent=self._count_unsent)

    def _count_unsent(self) -> None:
        """A paced replay closed while it waited to hand out an event: not emitted."""
        self.events_emitted -= 1

    def close(self) -> None:
        """Stop replays still running and close their files."""
        running, self._running = list(self._running), weakref.WeakSet()
        for replay in running:
            replay.close()  # type: ignore[attr-defined]

    def _replay(self, ctx: FeedContext) -> Iterator[MarketEvent]:
        skipping = _Skipping()
        streams = [self._file_blocks(ctx, file, skipping) for file in self.files]
        rows: Iterator[Any] = (
            chain.from_iterable(streams[0])
            if len(streams) == 1
            else heapq.merge(*map(chain.from_iterable, streams), key=itemgetter(0))
        )
        # Ids are minted a few at a time (one call for many), and each event is made only
        # when it is asked for: objects made ahead would outlive the garbage collector's
        # youngest generation and cost more in collections than they save.
        ids = ctx.ids
        minted = chain.from_iterable(iter(lambda: mint_ids(ids, IDS_MINTED_AT_ONCE), None))
        build: Callable[[UUID, Any], MarketEvent]
        build = tick_builder(self._tick_fields()) if self.kind == "tick" else bar_builder()
        emitted = 0
        try:
            if ctx.skip_events:
                self._leave_out(ctx, rows, skipping)
            for emitted, (row, event_id) in enumerate(zip(rows, minted, strict=False), 1):  # noqa: B007
                yield build(event_id, row)
        finally:
            self.events_emitted += emitted
            for stream in streams:
                stream.close()  # type: ignore[attr-defined]

    @staticmethod
    def _leave_out(ctx: FeedContext, rows: Iterator[Any], skipping: _Skipping) -> None:
        """Take from ``rows`` the ``ctx.skip_events`` an earlier run published (see
        FeedContext.skip_events): no event, no id. The bad rows met on the way were that run's
        to report: a bad row is reported when the row after it is asked for, and that run
        asked for the same rows to get as far."""
        skipping.active = True
        try:
            deque(islice(rows, ctx.skip_events), maxlen=0)
        finally:
            skipping.active = False
        if skipping.bad_rows:
            ctx.logger.info(
                "replay: %d bad row(s) before where an earlier run got to were reported by "
                "that run, not again",
                skipping.bad_rows,
            )

    def _columns_by_position(self) -> bool:
        return all(isinstance(at, int) for at in self.columns.values())

    def _warn_of_a_data_header(self, ctx: FeedContext, file: _File, parser: RowParser) -> None:
        """Columns read by position (a preset such as ``minute``, or 0-based ``columns``) never
        look at the header: a file without one would lose its first row to it, unnoticed."""
        try:
            first = read_csv_header(file.path, delimiter=self.delimiter, encoding=self.encoding)
            parser.parse(first)
        except (ValueError, ArithmeticError, BadRow):
            return  # a header indeed (or nothing the row path would take either)
        ctx.logger.warning(
            "%s: its first line (%s) reads as a data row, but header = true skips it as the "
            "header; set header = false if the file has none",
            file.path,
            self.delimiter.join(first),
        )

    def _tick_fields(self) -> frozenset[str]:
        """The tick fields the files give (mapped columns; last_price also as a mid)."""
        fields = {name for name in self.columns if name in TICK_ROW_FIELDS}
        return frozenset(fields | {"last_price"})

    def _file_blocks(
        self, ctx: FeedContext, file: _File, skipping: _Skipping
    ) -> Iterator[list[Any]]:
        """The file's good rows, parsed (tick rows, or ``(ts, values)`` of bars), a block at
        a time; bad rows are reported (and skipped, or the end of the replay), but not while
        ``skipping`` what an earlier run published."""
        try:
            layout = self._layout(file)
        except ValueError as exc:
            raise BadInputError(str(exc)) from exc
        try:
            timestamp_format = self._file_timestamp_format(file, layout)
        except ValueError as exc:
            raise BadInputError(str(exc)) from exc

        def new_parser() -> RowParser:
            return RowParser(
                kind=self.kind,
                layout=layout,
                instrument=file.instrument,
                times=TimeReader(timestamp_format, self.zone),
                timing=self.timing,
                adjusted=self.price_column == "adj_close",
            )

        parser = new_parser()
        parse = parser.parse
        if self.header and not is_parquet(file.path) and self._columns_by_position():
            self._warn_of_a_data_header(ctx, file, new_parser())
        source: CsvSource | ParquetSource
        if is_parquet(file.path):
            source = ParquetSource(file.path, needed=list(layout.index.values()))
        else:
            read = {at: layout.labels[at] for at in layout.index.values()}
            source = CsvSource(
                file.path,
                delimiter=self.delimiter,
                encoding=self.encoding,
                header=self.header,
                labels=read,
            )
        parse_block = parser.parse_block
        skipped = 0  # this file's (the feed's count is of every file, read interleaved)
        for block in source.blocks():
            parsed = parse_block(block)
            if parsed is not None:
                yield parsed
                continue
            good = []
            for index, row in enumerate(block.rows):
                try:
                    good.append(parse(row))
                except BadRow as exc:
                    if source.blank(block, index):
                        continue  # a line of spaces: blank, so not a row
                    if good:
                        # The rows before it first: a bad row is reported (or stops the
                        # replay) when the replay gets to it, as the row after it is asked for.
                        yield good
                        good = []
                    if skipping.active and self.on_error == "skip":
                        skipping.bad_rows += 1
                        continue
                    skipped += 1
                    where, raw = source.location(block, index), source.raw(block, index)
                    reason = f"{exc}{source.note(block, index)}"
                    self._reject(ctx, file.path, where, reason, raw)
            if good:
                yield good
        if skipped:
            ctx.logger.warning(
                "replay: %s: skipped %d bad row(s); each was reported as bad input",
                file.path,
                skipped,
            )

    def _reject(self, ctx: FeedContext, path: Path, location: str, reason: str, raw: bytes) -> None:
        self.bad_rows += 1
        if self.on_error == "stop":
            raise BadInputError(f"{path}: {location}: {reason}")
        if self.bad_rows <= LOGGED_BAD_ROWS:
            ctx.logger.debug("replay: %s: %s: %s (row skipped)", path, location, reason)
        ctx.report_bad_input(
            DeadLetter(
                source=str(path),
                reason=reason,
                error_type="bad_row",
                raw=raw,
                # When it was refused. Not the run's clock: rows are read a block ahead of
                # it, and a backtest's clock is the data's time.
                ts=datetime.now(UTC),
                location=location,
            )
        )


@dataclass
class _Skipping:
    """Whether a replay is leaving out what an earlier run published, and the bad rows it
    met doing so (that run reported them)."""

    active: bool = False
    bad_rows: int = 0


# --------------------------------------------------------------------------------------------
# Parameter checks


def _head_digest(path: Path, size: int = 1 << 16) -> str:
    with path.open("rb") as file:
        return hashlib.sha256(file.read(size)).hexdigest()


def _check_format(format: str | None, columns: Any) -> str:
    if format is None:
        if columns is None:
            raise ValueError(
                f"format is required: one of {', '.join(repr(f) for f in FORMATS)} "
                "(or give columns for a custom layout)"
            )
        return "custom"
    if format not in FORMATS:
        raise ValueError(
            f"unknown format {format!r}; expected one of {', '.join(repr(f) for f in FORMATS)}"
        )
    if format == "custom" and not columns:
        raise ValueError("format = 'custom' needs columns: a mapping of field name to column")
    if format != "custom" and columns is not None:
        raise ValueError(
            f"columns is only for format = 'custom'; format {format!r} has a fixed layout"
        )
    return format


def _check_columns(columns: Any) -> dict[str, str | int]:
    if not isinstance(columns, dict):
        raise ValueError(f"columns must be a mapping of field name to column, got {columns!r}")
    mapping: dict[str, str | int] = {}
    for name, column in columns.items():
        if isinstance(column, bool) or not isinstance(column, str | int):
            raise ValueError(
                f"columns.{name} must be a column name or a 0-based position, got {column!r}"
            )
        if isinstance(column, str) and not column.strip():
            raise ValueError(f"columns.{name} is empty")
        mapping[str(name)] = column
    return mapping


def _check_custom_fields(kind: Kind, columns: dict[str, str | int]) -> None:
    allowed = TIME_FIELDS | COMMON_FIELDS | (TICK_FIELDS if kind == "tick" else BAR_FIELDS)
    unknown = sorted(set(columns) - allowed)
    if unknown:
        raise ValueError(
            f"columns: unknown field(s) {', '.join(repr(u) for u in unknown)} for {kind}s; "
            f"known fields: {', '.join(sorted(allowed))}"
        )
    times = TIME_FIELDS.intersection(columns)
    choices = _TICK_TIMES if kind == "tick" else _BAR_TIMES
    if times not in choices:
        spelled = " | ".join("+".join(sorted(c)) for c in choices)
        found = "+".join(sorted(times)) or "none"
        raise ValueError(f"columns: {kind}s need one time column set ({spelled}); found {found}")
    if kind == "tick":
        if "last_price" not in columns and not {"bid", "ask"} <= set(columns):
            raise ValueError(
                "columns: ticks need last_price, or both bid and ask (last_price is their mid)"
            )
    else:
        missing = [name for name in ("open", "high", "low", "close") if name not in columns]
        if missing:
            raise ValueError(f"columns: bars need open, high, low and close; missing {missing}")


def _check_instrument(instrument: Any) -> str:
    if not isinstance(instrument, str) or not instrument.strip():
        raise ValueError(f"instrument must be a non-empty name, got {instrument!r}")
    name: str = instrument.strip()
    if len(name) > MAX_INSTRUMENT_LENGTH:
        raise ValueError(f"instrument is longer than {MAX_INSTRUMENT_LENGTH} characters")
    if not name.isprintable():
        # As the events require: they are built here without a second validation.
        raise ValueError(f"instrument {name!r} has unprintable characters")
    return name


def _check_timestamp_format(timestamp_format: Any, zone: tzinfo) -> str | None:
    if timestamp_format is None or timestamp_format in ("iso", "unix", "unix_ms"):
        return timestamp_format  # type: ignore[no-any-return]
    if not isinstance(timestamp_format, str) or "%" not in timestamp_format:
        raise ValueError(
            f"timestamp_format {timestamp_format!r} is not a strptime pattern "
            "(e.g. '%m/%d/%Y %H:%M:%S') nor one of 'iso', 'unix', 'unix_ms'"
        )
    if "%Z" in timestamp_format.replace("%%", "") and zone is not UTC:
        # strptime takes only UTC, GMT and this machine's zone names there, and drops them.
        raise ValueError(
            f"timestamp_format {timestamp_format!r} uses %Z, which Python's strptime reads but "
            f"drops: every time would be taken as in the timezone {zone}, also one written "
            "'UTC'. For times written with an offset use %z; for times in UTC or GMT keep "
            "%Z and leave timezone at 'UTC'"
        )
    # A pattern strptime cannot use ('%Q', '%s', a stray '%', '%G' without '%V') would make
    # every row bad; one that writes a sample time and reads it back can be used.
    try:
        datetime.strptime(_SAMPLE_TIME.strftime(timestamp_format), timestamp_format)
    except ValueError as exc:
        raise ValueError(
            f"timestamp_format {timestamp_format!r} is not a usable strptime pattern: {exc} "
            "(see the format codes of Python's datetime.strptime; epoch numbers are 'unix' or "
            "'unix_ms')"
        ) from None
    return timestamp_format


def _check_delimiter(delimiter: Any) -> str:
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise ValueError(
            f"delimiter must be one character (not a quote or newline), got {delimiter!r}"
        )
    return delimiter


def _check_encoding(encoding: Any) -> str:
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"unknown encoding {encoding!r}") from None
    # rot13, base64, zlib and the like are codecs too, but not of bytes to text.
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"encoding {encoding!r} is not a text encoding (e.g. 'utf-8', 'cp1252')")
    return encoding  # type: ignore[no-any-return]


def _zone(name: Any) -> tzinfo:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"timezone must be an IANA name like 'America/New_York', got {name!r}")
    if name.strip().upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name like 'America/New_York' or 'UTC'"
        ) from None


def _check_is_file(path: Path) -> None:
    if path.is_file():
        return
    where = "" if path.is_absolute() else f" (resolved from the current directory {Path.cwd()})"
    if path.is_dir():
        raise ReplayIsADirectoryError(
            errno.EISDIR, f"path is a directory, not a file: {path}{where}", str(path)
        )
    if path.exists():
        raise ValueError(f"path is not a regular file: {path}{where}")
    raise ReplayFileNotFoundError(errno.ENOENT, f"file not found: {path}{where}", str(path))


def _path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError(f"a path must be a file name, got {value!r}")
    return Path(value).expanduser()
