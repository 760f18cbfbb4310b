"""Turning one row of text fields into the checked values of a tick or a bar.

Every check the event models make is made here, with a reason a person can act on, so the feed
can build events without validating them a second time (see :mod:`tradeloom_replay.construct`).
Numbers are read with ``Decimal(text)``: the value in the file, never a float's approximation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from itertools import islice, repeat
from operator import add, attrgetter, le, sub
from typing import Any

from tradeloom.events import LARGEST_EXPONENT, SMALLEST_EXPONENT, out_of_range
from tradeloom.numbers import decimal_from_text, written_as_data
from tradeloom_replay.formats import BarTimestamp, Kind
from tradeloom_replay.sources import RowBlock

MAX_INSTRUMENT_LENGTH = 200

#: The fields of a tick row, in order: what the parser returns and the builder takes.
TICK_ROW_FIELDS = ("ts", "instrument", "last_price", "bid", "ask", "last_quantity", "volume")
TickRow = tuple[
    datetime, str, Decimal, Decimal | None, Decimal | None, Decimal | None, Decimal | None
]
#: The fields of a bar row, in order (``ts`` is the bar's end).
BAR_ROW_FIELDS = ("ts", "instrument", "open", "high", "low", "close", "volume", "start", "end")
BarRow = tuple[datetime, str, Decimal, Decimal, Decimal, Decimal, Decimal, datetime, datetime]

# The mid of two prices is exact: (bid + ask) / 2 always terminates. Refuse rather than round
# should a file hold absurdly long numbers.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])
# Adjusting by Adj Close / Close rarely terminates: 28 significant digits, half-even.
_ADJUST = Context(prec=28)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_combine = datetime.combine
_fromisoformat = datetime.fromisoformat
_ONE_DAY = timedelta(days=1)


class BadRow(Exception):
    """A row that cannot become an event. The message is the reason."""


@dataclass(frozen=True)
class Layout:
    """Where each field sits in a row, resolved against the file's header."""

    index: dict[str, int]
    labels: dict[int, str]
    #: Exact number of fields a row must have, when known.
    row_width: int | None

    def label(self, name: str) -> str:
        return self.labels[self.index[name]]


def resolve_layout(
    columns: Mapping[str, str | int],
    header: Sequence[str] | None,
    *,
    source: str,
    row_width: int | None = None,
    labels: Mapping[int, str] | None = None,
) -> Layout:
    """Map field names to positions. Names are looked up in ``header`` (exactly, then ignoring
    case); integers are 0-based positions. Raise ValueError naming what is missing."""
    names = [name.strip() for name in header] if header is not None else None
    index: dict[str, int] = {}
    shown: dict[int, str] = dict(labels or {})
    by_name = False
    for field_name, column in columns.items():
        if isinstance(column, int):
            if column < 0:
                raise ValueError(f"column of {field_name!r} must be 0 or more, got {column}")
            position = column
            if names is not None and position < len(names) and position not in shown:
                shown[position] = names[position]
            shown.setdefault(position, f"field {position + 1}")
        else:
            if names is None:
                raise ValueError(
                    f"{source}: header = false, so columns must be 0-based positions, "
                    f"not names ({field_name} = {column!r})"
                )
            position = _find(names, column, source=source, field_name=field_name)
            shown.setdefault(position, names[position])
            by_name = True
        index[field_name] = position
    if row_width is None and by_name and names is not None:
        row_width = len(names)
    return Layout(index=index, labels=shown, row_width=row_width)


def _find(names: Sequence[str], column: str, *, source: str, field_name: str) -> int:
    wanted = column.strip()
    exact = [position for position, name in enumerate(names) if name == wanted]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise ValueError(
            f"{source}: column {column!r} (for {field_name}) is in the header {len(exact)} "
            f"times (fields {', '.join(str(p + 1) for p in exact)}): which one is meant? "
            "Give its 0-based position instead of its name"
        )
    alike = [position for position, name in enumerate(names) if name.lower() == wanted.lower()]
    if len(alike) == 1:
        return alike[0]
    if alike:
        raise ValueError(
            f"{source}: column {column!r} (for {field_name}) matches "
            f"{', '.join(repr(names[p]) for p in alike)} in the header when case is ignored: "
            "write it exactly as one of them"
        )
    hint = ""
    if any("\x00" in name for name in names):  # every other byte zero: two bytes a character
        hint = " (the header holds NUL characters: is the file UTF-16? set encoding = 'utf-16')"
    elif len(names) == 1:  # one column: most likely split on the wrong character
        other = next((sep for sep in ";\t|" if sep in names[0]), None)
        if other is not None:
            hint = f" (is the file delimited by {other!r}? set delimiter = {other!r})"
    raise ValueError(
        f"{source}: no column {column!r} (for {field_name}) in the header; "
        f"the header has {', '.join(repr(name) for name in names)}{hint}"
    )


# --------------------------------------------------------------------------------------------
# Numbers


def _may_be_tiny(texts: Sequence[str], joined: str) -> bool:
    """Whether the numbers written as ``texts`` (``joined``: together) may hold one of less
    than 1E-100000: only with an exponent, or in more than 100,000 characters (``0.``,
    100,000 zeros and a digit)."""
    return (
        "e" in joined or "E" in joined or (len(joined) > 100_000 and max(map(len, texts)) > 100_000)
    )


def read_decimal(text: str, label: str) -> Decimal:
    """Any finite number."""
    try:
        value = decimal_from_text(text)
    except InvalidOperation:
        raise BadRow(_not_a_number(text, label)) from None
    if not value.is_finite():
        raise BadRow(f"column {label!r}: {text!r} is not a finite number")
    _check_range(value, label)
    return value


def read_positive(text: str, label: str) -> Decimal:
    """A finite number greater than zero (prices, quantities)."""
    try:
        value = decimal_from_text(text)
    except InvalidOperation:
        raise BadRow(_not_a_number(text, label)) from None
    if not value.is_finite():
        raise BadRow(f"column {label!r}: {text!r} is not a finite number")
    if value <= 0:
        raise BadRow(f"column {label!r}: must be greater than zero, got {text.strip()}")
    _check_range(value, label)
    return value


def _check_range(value: Decimal, label: str) -> None:
    problem = out_of_range(value)
    if problem is not None:
        raise BadRow(f"column {label!r}: {problem}")


def read_non_negative(text: str, label: str) -> Decimal:
    """A finite number, zero or more (volumes)."""
    value = read_decimal(text, label)
    if value < 0:
        raise BadRow(f"column {label!r}: must not be negative, got {text.strip()}")
    return value


def _not_a_number(text: str, label: str) -> str:
    if not text.strip():
        return f"column {label!r} is empty"
    return f"column {label!r}: {text!r} is not a number"


def mid_price(bid: Decimal, ask: Decimal) -> Decimal:
    """(bid + ask) / 2, exactly."""
    try:
        return _EXACT.divide(_EXACT.add(bid, ask), 2)
    except (Inexact, Overflow):
        raise BadRow(f"the mid of bid {bid} and ask {ask} cannot be computed exactly") from None


def adjust(value: Decimal, adj_close: Decimal, close: Decimal) -> Decimal:
    """``value * adj_close / close`` in Decimal arithmetic (28 significant digits), kept on
    its side of the close: a price equal to ``close`` is ``adj_close`` exactly, one above it
    at least ``adj_close``, one below it at most. Rounding could otherwise put a high that
    equals the close a unit of the 28th digit below ``adj_close``, which is exact, and the bar
    would lose its shape."""
    if value == close:
        return adj_close
    adjusted = _ADJUST.divide(_ADJUST.multiply(value, adj_close), close)
    problem = out_of_range(adjusted)
    if problem is not None:
        raise BadRow(f"adjusted by Adj Close {adj_close}: {problem}")
    if value > close:
        return adjusted if adjusted >= adj_close else adj_close
    return adjusted if adjusted <= adj_close else adj_close


# --------------------------------------------------------------------------------------------
# Time


class TimeReader:
    """Reads timestamps: ISO-8601 by default, a ``strptime`` pattern, or ``unix`` /
    ``unix_ms`` epoch numbers. Naive timestamps are wall-clock times in ``zone``; a timestamp
    with an offset keeps it. Returns aware datetimes (not yet converted to UTC)."""

    def __init__(self, timestamp_format: str | None, zone: tzinfo) -> None:
        self.zone = zone
        self.timestamp_format = timestamp_format
        # A zone whose clocks change has local times that do not exist (skipped when they go
        # forward) and times that come twice (when they go back).
        self._changes = zone is not UTC and not isinstance(zone, timezone)
        self.last_ambiguous: datetime | None = None
        """The last naive timestamp read that came twice, as read (its first time): a row
        that is earlier than the one before it may be its second time (see ``RowParser``)."""
        self._parse: Callable[[str], datetime]
        if timestamp_format in (None, "iso"):
            self._parse = datetime.fromisoformat
            self._expected = "an ISO-8601 timestamp"
        elif timestamp_format in ("unix", "unix_ms"):
            scale = 1 if timestamp_format == "unix" else 1000
            self._parse = lambda text: _from_epoch(text, scale)
            self._expected = f"{timestamp_format} epoch time"
        else:
            pattern = timestamp_format
            self._parse = lambda text: datetime.strptime(text, pattern)
            self._expected = f"format {pattern!r}"

    @property
    def joins_with_space(self) -> bool:
        """Date and time columns are joined with a space for a pattern, with ``T`` for ISO."""
        return self.timestamp_format not in (None, "iso")

    def parse_text(self, text: str) -> datetime:
        """Parse text exactly as given (no stripping); raises ValueError and the like."""
        return self._parse(text)

    def to_utc(self, value: datetime) -> datetime:
        """A parsed timestamp in UTC: naive ones are wall-clock times in ``zone``."""
        if value.tzinfo is None:
            value = self._local(value, str(value), "")
        return to_utc(value)

    def _local(self, naive: datetime, text: str, label: str) -> datetime:
        """``naive`` as a wall-clock time in ``zone`` (the first of a time that comes twice);
        raises BadRow for a time the clocks skipped."""
        # value.replace(tzinfo=zone) costs about four times as much in Python 3.11.
        local = _combine(naive.date(), naive.time(), self.zone)
        if not self._changes:
            return local
        self.last_ambiguous = None
        if local.replace(fold=1).utcoffset() != local.utcoffset():
            if to_utc(local).astimezone(self.zone).replace(tzinfo=None) != naive:
                if naive.time() == time.min:
                    # A date alone (or its midnight) is a day, whose first hour the clocks
                    # skipped where they change at midnight (Sao Paulo until 2019): read as
                    # before, from the offset before the change.
                    return local
                where = f"column {label!r}: " if label else ""
                raise BadRow(
                    f"{where}{text!r} does not exist in {self.zone} (the clocks went forward "
                    "over it): is the zone right?"
                )
            self.last_ambiguous = local
        return local

    def read(self, text: str, label: str) -> datetime:
        try:
            value = self._parse(text.strip())
        except (ValueError, OverflowError, InvalidOperation):
            if not text.strip():
                raise BadRow(f"column {label!r} is empty") from None
            raise BadRow(
                f"column {label!r}: cannot read {text!r} as a timestamp (expected {self._expected})"
            ) from None
        if value.tzinfo is None:
            return self._local(value, text, label)
        if value.utcoffset() is None:
            raise BadRow(f"column {label!r}: {text!r} has a time zone without an offset")
        return value


def _from_epoch(text: str, scale: int) -> datetime:
    value = decimal_from_text(text)
    if not value.is_finite():
        raise ValueError("not a finite number")
    if value.adjusted() > 21:  # past year 9999 in any unit; 1e999999 would overflow below
        raise OverflowError("out of range")
    return _EPOCH + timedelta(microseconds=int(value * 1_000_000 / scale))


def to_utc(value: datetime) -> datetime:
    """``value`` (aware) in UTC; a time that falls before year 1 or after 9999 there (a
    placeholder such as 9999-12-31 in New York) is a bad row, not a crash of the replay."""
    if value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise BadRow(
            f"{value.isoformat()} is out of range in UTC (before year 1 or after 9999)"
        ) from None


@dataclass(frozen=True)
class BarTiming:
    """How a bar's ``[start, end)`` follows from its one timestamp.

    Intervals of whole days are added in the wall-clock time of the timestamp's zone (a daily
    bar runs from midnight to the next midnight, also across a daylight-saving change); shorter
    ones are added as elapsed time."""

    interval: timedelta
    marks: BarTimestamp

    def span(self, stamp: datetime) -> tuple[datetime, datetime]:
        interval = self.interval
        if interval % _ONE_DAY:
            stamp = to_utc(stamp)
        try:
            if self.marks == "start":
                return to_utc(stamp), to_utc(stamp + interval)
            return to_utc(stamp - interval), to_utc(stamp)
        except OverflowError:
            side = "ends after the year 9999" if self.marks == "start" else "starts before year 1"
            raise BadRow(
                f"a bar of {_interval_text(interval)} at {stamp.isoformat()} {side}"
            ) from None


def _interval_text(interval: timedelta) -> str:
    if interval.seconds or interval.microseconds:
        return str(interval)
    return f"{interval.days} day{'' if interval.days == 1 else 's'}"


# --------------------------------------------------------------------------------------------
# Rows


class RowParser:
    """Checks one row of one file and returns ``(ts, values)`` for a tick or a bar, or raises
    :class:`BadRow`. Remembers the last accepted time per instrument, so a row earlier than the
    one before it (for the same instrument) is refused: one parser per file."""

    def __init__(
        self,
        *,
        kind: Kind,
        layout: Layout,
        instrument: str | None,
        times: TimeReader,
        timing: BarTiming | None,
        adjusted: bool,
    ) -> None:
        self.kind = kind
        self.layout = layout
        self.instrument = instrument
        self.times = times
        self.timing = timing
        index = layout.index
        self._width = layout.row_width
        self._min_width = max(index.values()) + 1
        self._instrument_at = index.get("instrument")
        self._time_fields = [
            name for name in ("ts", "date", "time", "start", "end") if name in index
        ]
        self._last: dict[str, Any] = {}
        self._latest: datetime | None = None  # of the ticks read so far, of any instrument
        # Bars with both a start and an end column: each one's second reading (UTC) when it
        # was read from a local time that comes twice, as its first; else None.
        self._both_ends = "start" in index and "end" in index
        self._start_again: datetime | None = None
        self._end_again: datetime | None = None
        # Fast-path facts for _tick (a replay of ticks parses millions of rows): a row of this
        # width needs no further width check; the one time column, when it is ``ts``.
        width_ok = self._width is not None and self._width >= self._min_width
        self._good_width = self._width if width_ok else None
        self._ts_at = index["ts"] if self._time_fields[:1] == ["ts"] else None
        self._ts_label = layout.label("ts") if self._ts_at is not None else ""
        # The position of the one time column, when there is one (ts, or a date alone).
        self._stamp_at = (
            index[self._time_fields[0]]
            if len(self._time_fields) == 1 and self._time_fields[0] in ("ts", "date")
            else None
        )
        self._numbers: list[tuple[str, int, str, Callable[[str, str], Decimal], bool]] = []
        self.parse: Callable[[Sequence[str]], Any]
        # parse_block handles one instrument per file, rows of a known width and one time
        # column; for bars, one interval added in UTC as BarTiming.span does it (not whole
        # days in a zone with daylight saving) and no adjusted close.
        self._block_ready = (
            self._good_width is not None
            and self._stamp_at is not None
            and self._instrument_at is None
            and instrument is not None
            and (
                kind == "tick"
                or (
                    timing is not None
                    and not adjusted
                    and (bool(timing.interval % _ONE_DAY) or times.zone is UTC)
                )
            )
        )
        if kind == "tick":
            self._mid = "last_price" not in index
            self._add_number("last_price", read_positive, required=True)
            self._add_number("bid", read_positive, required=self._mid)
            self._add_number("ask", read_positive, required=self._mid)
            self._add_number("last_quantity", read_positive, required=False)
            self._add_number("volume", read_non_negative, required=False)
            self.parse = self._tick
        else:
            self._adjusted = adjusted
            for name in ("open", "high", "low", "close"):
                self._add_number(name, read_positive, required=True)
            if adjusted:
                self._add_number("adj_close", read_positive, required=True)
            self._add_number("volume", read_non_negative, required=True)
            self._fixed_volume = "volume" not in index
            self.parse = self._bar

    def _add_number(
        self, name: str, read: Callable[[str, str], Decimal], *, required: bool
    ) -> None:
        if name in self.layout.index:
            position = self.layout.index[name]
            self._numbers.append((name, position, self.layout.labels[position], read, required))

    # -- shared steps

    def _second_time(self, ts: datetime, previous: datetime) -> datetime:
        """``ts`` (UTC), read from a local time that comes twice (the clocks went back), as
        its second time when the first is earlier than ``previous`` (the latest time of the
        file so far, of any instrument: a file written by the clock is in time order across
        instruments): the rows of the repeated hour follow the rows of its first pass. Else
        ``ts``."""
        first = self.times.last_ambiguous
        if first is None or first.astimezone(UTC) != ts:
            return ts
        second = first.replace(fold=1).astimezone(UTC)
        return second if second >= previous else ts

    def _check_width(self, row: Sequence[str]) -> None:
        width = len(row)
        if self._width is not None and width != self._width:
            raise BadRow(f"row has {width} fields, expected {self._width}{self._missing(width)}")
        if width < self._min_width:
            raise BadRow(
                f"row has {width} fields, expected at least {self._min_width}{self._missing(width)}"
            )

    def _missing(self, width: int) -> str:
        absent = sorted({p for p in self.layout.index.values() if p >= width})
        if not absent:
            return ""
        names = ", ".join(repr(self.layout.labels[p]) for p in absent)
        return f" (missing column {names})"

    def _read_instrument(self, row: Sequence[str]) -> str:
        if self._instrument_at is None:
            return self.instrument  # type: ignore[return-value]
        value = row[self._instrument_at].strip()
        label = self.layout.labels[self._instrument_at]
        if not value:
            raise BadRow(f"column {label!r} (instrument) is empty")
        if not value.isprintable():
            raise BadRow(f"column {label!r}: instrument {value!r} has unprintable characters")
        if len(value) > MAX_INSTRUMENT_LENGTH:
            raise BadRow(
                f"column {label!r}: instrument is longer than {MAX_INSTRUMENT_LENGTH} characters"
            )
        return value

    def _read_numbers(self, row: Sequence[str], values: dict[str, Any]) -> None:
        for name, position, label, read, required in self._numbers:
            text = row[position]
            if not required and not text.strip():
                values[name] = None
            else:
                values[name] = read(text, label)

    def _read_stamp(self, row: Sequence[str], name: str) -> datetime:
        """The timestamp of field ``ts``, ``start`` or ``end``, or of ``date`` (+ ``time``)."""
        layout = self.layout
        if name != "date":
            return self.times.read(row[layout.index[name]], layout.label(name))
        date_text = row[layout.index["date"]]
        if "time" not in layout.index:
            return self.times.read(date_text, layout.label("date"))
        time_text = row[layout.index["time"]]
        label = f"{layout.label('date')}/{layout.label('time')}"
        if not date_text.strip() or not time_text.strip():
            raise BadRow(f"column {label!r}: date or time is empty")
        joint = " " if self.times.joins_with_space else "T"
        return self.times.read(f"{date_text.strip()}{joint}{time_text.strip()}", label)

    # -- ticks

    def parse_block(self, block: RowBlock) -> Iterator[TickRow] | Iterator[BarRow] | None:
        """A block of rows at once, column by column: the rows as :meth:`parse` gives them
        if every one is good, else None, and the caller parses them one by one (which gives
        each bad row's reason). Also None for layouts this does not handle (see
        ``_block_ready``)."""
        if not self._block_ready:
            return None
        columns = block.columns(self._good_width)  # type: ignore[arg-type]
        if columns is None:
            return None
        try:
            times = self._block_times(columns[self._stamp_at])  # type: ignore[index]
            if times is None:
                return None
            numbers = self._block_numbers(columns)
            if numbers is None:
                return None
            if self.kind == "tick":
                return self._tick_block(times, numbers)
            return self._bar_block(times, numbers)
        except (ValueError, ArithmeticError, BadRow):
            return None  # InvalidOperation, also from comparing a NaN, is an ArithmeticError

    def _block_numbers(self, columns: Sequence[Sequence[str]]) -> dict[str, list[Decimal]] | None:
        values_of: dict[str, list[Decimal]] = {}
        for name, position, _label, read, _required in self._numbers:
            texts = columns[position]
            joined = "".join(texts)
            if not written_as_data(joined):
                return None  # the row path says which cell is not a number
            values = list(map(Decimal, texts))
            low, high = min(values), max(values)
            if not high.is_finite() or low < 0 or (low == 0 and read is read_positive):
                return None
            if high.adjusted() > LARGEST_EXPONENT:
                return None
            if low:
                if low.adjusted() < SMALLEST_EXPONENT:
                    return None
            elif _may_be_tiny(texts, joined) and any(map(out_of_range, values)):
                return None
            values_of[name] = values
        return values_of

    def _tick_block(
        self, times: list[datetime], values_of: dict[str, list[Decimal]]
    ) -> Iterator[TickRow] | None:
        instrument: str = self.instrument  # type: ignore[assignment]
        if self._mid:
            values_of["last_price"] = list(map(mid_price, values_of["bid"], values_of["ask"]))
        previous = self._last.get(instrument)
        if previous is not None and times[0] < previous:
            return None
        if not all(map(le, times, islice(times, 1, None))):
            return None
        self._last[instrument] = times[-1]
        if self._latest is None or times[-1] > self._latest:
            self._latest = times[-1]
        absent = repeat(None)
        return zip(
            times,
            repeat(instrument),
            *(values_of.get(name, absent) for name in TICK_ROW_FIELDS[2:]),
        )

    def _bar_block(
        self, stamps: list[datetime], values_of: dict[str, list[Decimal]]
    ) -> Iterator[BarRow] | None:
        instrument: str = self.instrument  # type: ignore[assignment]
        timing: BarTiming = self.timing  # type: ignore[assignment]
        at_start = timing.marks == "start"
        shifted = list(map(add if at_start else sub, stamps, repeat(timing.interval)))
        starts, ends = (stamps, shifted) if at_start else (shifted, stamps)
        opens, highs, lows = values_of["open"], values_of["high"], values_of["low"]
        closes = values_of["close"]
        volumes: Iterable[Decimal] = (
            repeat(Decimal(0)) if self._fixed_volume else values_of["volume"]
        )
        if not (
            all(map(le, lows, highs))
            and all(map(le, lows, opens))
            and all(map(le, opens, highs))
            and all(map(le, lows, closes))
            and all(map(le, closes, highs))
        ):
            return None
        previous = self._last.get(instrument)
        if previous is not None and (starts[0] <= previous[0] or starts[0] < previous[1]):
            return None
        # Each bar starts at or after the end of the one before (so also after its start).
        if not all(map(le, ends, islice(starts, 1, None))):
            return None
        self._last[instrument] = (starts[-1], ends[-1])
        return zip(ends, repeat(instrument), opens, highs, lows, closes, volumes, starts, ends)

    def _block_times(self, texts: Sequence[str]) -> list[datetime] | None:
        """The timestamps in UTC, or None if any needs a closer look (row by row)."""
        reader = self.times
        if reader.zone is UTC and reader.timestamp_format in (None, "iso"):
            # A naive ISO timestamp is UTC: parsed with an explicit +00:00 it comes out in
            # UTC at once; one that has its own offset fails this and takes the general way.
            try:
                values = list(map(_fromisoformat, map(add, texts, repeat("+00:00"))))
            except ValueError:
                pass
            else:
                # A date alone keeps no offset (Python 3.11 drops it): then the general way.
                if set(map(attrgetter("tzinfo"), values)) == {UTC}:
                    return values
        values = list(map(reader.parse_text, texts))
        zones = set(map(attrgetter("tzinfo"), values))
        if zones == {UTC}:
            return values
        if any(zone is not None and zone.utcoffset(None) is None for zone in zones):
            return None  # rare: let the row path decide (and explain)
        try:
            return [reader.to_utc(value) for value in values]
        except BadRow:  # a local time the clocks skipped: the row path says which
            return None

    def _tick(self, row: Sequence[str]) -> TickRow:
        if len(row) != self._good_width:
            self._check_width(row)
        ts_at = self._ts_at
        if ts_at is not None:
            ts = self.times.read(row[ts_at], self._ts_label)
        else:
            ts = self._read_stamp(row, self._time_fields[0])
        if ts.tzinfo is not UTC:
            ts = to_utc(ts)
        instrument = self._read_instrument(row)
        values: dict[str, Any] = {"ts": ts, "instrument": instrument}
        self._read_numbers(row, values)
        if self._mid:
            values["last_price"] = mid_price(values["bid"], values["ask"])
        latest = self._latest
        if latest is not None and ts < latest and self.times.last_ambiguous is not None:
            ts = values["ts"] = self._second_time(ts, latest)
        previous = self._last.get(instrument)
        if previous is not None and ts < previous:
            raise BadRow(
                f"out of order: {instrument} at {ts.isoformat()} is earlier than the row "
                f"before it at {previous.isoformat()}"
            )
        self._last[instrument] = ts
        if latest is None or ts > latest:
            self._latest = ts
        return (ts, instrument, *(values.get(name) for name in TICK_ROW_FIELDS[2:]))  # type: ignore[return-value]

    # -- bars

    def _bar_span(self, row: Sequence[str]) -> tuple[datetime, datetime]:
        if self._both_ends:
            times = self.times
            times.last_ambiguous = None
            start = to_utc(self._read_stamp(row, "start"))
            self._start_again = self._again(start)
            times.last_ambiguous = None
            end = to_utc(self._read_stamp(row, "end"))
            self._end_again = self._again(end)
            if end < start and self._end_again is not None and self._end_again >= start:
                end = self._end_again  # 01:30-01:00 across the change: into the second pass
            if end < start:
                raise BadRow(f"bar end {end.isoformat()} is before its start {start.isoformat()}")
            return start, end
        assert self.timing is not None
        return self.timing.span(self._read_stamp(row, self._time_fields[0]))

    def _again(self, value: datetime) -> datetime | None:
        """The second reading (UTC) of ``value``, the time just read, if it was read from a
        local time that comes twice (as its first); else None."""
        first = self.times.last_ambiguous
        if first is None or first.astimezone(UTC) != value:
            return None
        return first.replace(fold=1).astimezone(UTC)

    def _second_ends(
        self, span: tuple[datetime, datetime], previous: tuple[datetime, datetime] | None
    ) -> tuple[datetime, datetime]:
        """A bar with start and end columns, written by a clock that went back: its start is
        read as its second pass when the first overlaps the bar before (and the second does
        not); its end as its second pass when the first would end the bar before it starts,
        or at its start while the bar before was not empty (01:00-01:00 is the hour from
        01:00 to 01:00 again, not an empty bar). Else ``span``."""
        start, end = span
        start_again, end_again = self._start_again, self._end_again
        if start_again is not None and previous is not None and start < previous[1] <= start_again:
            start = start_again
        if end_again is not None and end_again >= start:
            empty_before = previous is not None and previous[0] == previous[1]
            if end < start or (end == start and not empty_before):
                end = end_again
        return (start, end) if end >= start else span

    def _second_span(
        self, span: tuple[datetime, datetime], previous_end: datetime
    ) -> tuple[datetime, datetime]:
        """A bar's span from a local time that comes twice (the clocks went back) as its
        second time, when the first overlaps the bar before: the bar of the second time
        follows the bar of the first. Else ``span``."""
        first = self.times.last_ambiguous
        if first is None or self.timing is None:
            return span
        if self.timing.span(first) != span:
            return span  # this row's time came once (the last one read was another's)
        later = self.timing.span(first.replace(fold=1))
        return later if later[0] >= previous_end else span

    def _bar(self, row: Sequence[str]) -> BarRow:
        self._check_width(row)
        start, end = self._bar_span(row)
        instrument = self._read_instrument(row)
        values: dict[str, Any] = {"ts": end, "instrument": instrument}
        self._read_numbers(row, values)
        if self._fixed_volume:
            values["volume"] = Decimal(0)
        # The shape is checked on the file's prices; adjusted, they keep it (see adjust).
        open_, high, low, close = values["open"], values["high"], values["low"], values["close"]
        if high < low:
            raise BadRow(f"high {high} is below low {low}")
        if not low <= open_ <= high:
            raise BadRow(f"open {open_} is outside low..high {low}..{high}")
        if not low <= close <= high:
            raise BadRow(f"close {close} is outside low..high {low}..{high}")
        if self._adjusted:
            adj_close = values["adj_close"]
            open_, high, low = (adjust(value, adj_close, close) for value in (open_, high, low))
            close = adj_close
        previous = self._last.get(instrument)
        if self._both_ends and (self._start_again, self._end_again) != (None, None):
            start, end = self._second_ends((start, end), previous)
        if previous is not None:
            previous_start, previous_end = previous
            if start < previous_end and not self._both_ends:
                start, end = self._second_span((start, end), previous_end)
            if start < previous_start:
                raise BadRow(
                    f"out of order: {instrument} bar starting {start.isoformat()} is earlier "
                    f"than the bar before it, starting {previous_start.isoformat()}"
                )
            if start == previous_start:
                raise BadRow(
                    f"duplicate bar: {instrument} already has a bar starting {start.isoformat()}"
                )
            if start < previous_end:
                raise BadRow(
                    f"{instrument} bar starting {start.isoformat()} overlaps the bar before it, "
                    f"which ends {previous_end.isoformat()} (is bar_interval right?)"
                )
        self._last[instrument] = (start, end)
        return (end, instrument, open_, high, low, close, values["volume"], start, end)
