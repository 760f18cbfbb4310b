"""Reading files in blocks of rows: CSV (any delimiter) and, when pyarrow is installed, Parquet.

A source yields blocks of rows, each row a sequence of text fields; ``location(block, i)``
says where row ``i`` is and ``raw(block, i)`` returns its original content as bytes, for a
dead letter. Nothing is read ahead beyond one block (about 64 KiB of CSV text, or one Parquet
record batch), so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from itertools import chain, repeat
from operator import contains
from pathlib import Path
from typing import Any, TextIO

from tradeloom.errors import BadInputError

Row = Sequence[str]

PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_BATCH_ROWS = 8192
CSV_CHUNK_CHARS = 1 << 16  # read at a time; a block holds the whole lines among them
CSV_BLOCK_ROWS = 1024  # rows per block when the csv module parses


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def require_pyarrow() -> Any:
    """Import pyarrow.parquet, or explain how to get it."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ValueError(
            "reading Parquet files needs pyarrow, which is not installed: pip install pyarrow"
        ) from None
    return pq


# --------------------------------------------------------------------------------------------
# CSV

#: How compressed files begin (their "magic" bytes), to refuse them with a clear message.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)


def check_not_compressed(path: Path) -> None:
    """Raise ValueError if ``path`` is a compressed file (gzip, bzip2, xz, zstd or zip): read as
    text it would be a header of binary garbage and no column."""
    with path.open("rb") as handle:
        head = handle.read(10)
    for magic, name in _COMPRESSED:
        if head.startswith(magic) and (name != "bzip2" or head[4:10] == b"1AY&SY"):
            raise ValueError(
                f"{path}: the file is {name}-compressed; compressed files are not supported: "
                "decompress it first (e.g. gunzip, unzip) and replay the plain file"
            )


def _blank(row: Sequence[str], lines: Sequence[str]) -> bool:
    """Whether a record read by :mod:`csv` (``row``, from the physical ``lines``) is a blank
    line: empty, or nothing but spaces and tabs."""
    return not row or (not row[0].strip(" \t") and not "".join(lines).strip(" \t\r\n"))


def _first_row(lines: Iterator[str], delimiter: str) -> tuple[list[str] | None, int]:
    """The first record that is not a blank line, and the number of lines read up to it."""
    pending: list[str] = []
    reader = csv.reader(_tap(lines, pending), delimiter=delimiter)
    for row in reader:
        if not _blank(row, pending):
            return row, reader.line_num
        pending.clear()
    return None, reader.line_num


def read_csv_header(path: Path, *, delimiter: str, encoding: str) -> list[str]:
    try:
        with path.open(newline="", encoding=encoding, errors="surrogateescape") as handle:
            row, _ = _first_row(iter(handle.readline, ""), delimiter)
    except UnicodeError as exc:  # not of the bytes (those are kept): UTF-16 with no BOM
        name = codecs.lookup(encoding).name
        hint = (
            f"; without a byte-order mark, name the byte order: encoding = '{name}-le' "
            f"(or '{name}-be')"
            if name in ("utf-16", "utf-32")
            else ""
        )
        raise ValueError(f"{path}: cannot be read as {encoding}: {exc}{hint}") from None
    if row is None:
        raise ValueError(f"{path}: the file is empty, it has no header line")
    return row


def _tap(lines: Iterator[str], pending: list[str]) -> Iterator[str]:
    # Keeps the physical lines of the record being parsed, for a dead letter's raw bytes.
    for line in lines:
        pending.append(line)
        yield line


def _raw_encoding(path: Path, encoding: str) -> str:
    """The codec that gives a row's text back as the file's bytes: without a byte-order mark
    (which the file has once, at its start, not at every row) and in the file's byte order."""
    name = codecs.lookup(encoding).name
    if name == "utf-8-sig":
        return "utf-8"
    if name not in ("utf-16", "utf-32"):
        return encoding
    with path.open("rb") as handle:
        head = handle.read(4)
    if name == "utf-32":
        if head.startswith(codecs.BOM_UTF32_LE):
            return "utf-32-le"
        if head.startswith(codecs.BOM_UTF32_BE):
            return "utf-32-be"
    elif head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le"
    elif head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    # Without a byte-order mark Python reads the machine's byte order.
    return f"{name}-{'le' if sys.byteorder == 'little' else 'be'}"


def _has_surrogates(text: str) -> bool:
    # Undecodable bytes are read as the surrogates U+DC80..U+DCFF (errors="surrogateescape").
    return any("\udc80" <= char <= "\udcff" for char in text)


def _lone_cr(text: str) -> bool:
    return text.count("\r") != text.count("\r\n")


class RowBlock:
    """Consecutive rows of one file. ``numbers[i]`` is where row ``i`` is (the line it starts
    on, or its row in a Parquet file); ``texts[i]`` its original text (CSV), for a dead letter;
    ``last_lines[i]`` the line it ends on, when rows may span lines (quoted line breaks).

    A block of delimited lines is split into rows only when ``rows`` is asked for;
    :meth:`columns` reads it column by column without making a list per row.
    """

    __slots__ = ("_delimiter", "_rows", "last_lines", "numbers", "texts")

    def __init__(
        self,
        rows: list[Row] | None,
        numbers: Sequence[int],
        texts: Sequence[str] = (),
        *,
        delimiter: str | None = None,
        last_lines: Sequence[int] | None = None,
    ) -> None:
        self._rows = rows
        self.numbers = numbers
        self.texts = texts
        self._delimiter = delimiter
        self.last_lines = last_lines

    @property
    def rows(self) -> list[Row]:
        if self._rows is None:
            delimiter = self._delimiter
            self._rows = [line.split(delimiter) for line in self.texts]
        return self._rows

    def __len__(self) -> int:
        return len(self.numbers)

    def columns(self, width: int) -> Sequence[Sequence[str]] | None:
        """The fields column by column when every row has ``width`` fields; else None."""
        if not len(self):
            return None
        if self._rows is None:
            texts, delimiter = self.texts, self._delimiter
            assert delimiter is not None
            fields = delimiter.join(texts).split(delimiter)
            # Every row has width - 1 delimiters when they have n * (width - 1) together and
            # none has fewer. With two columns "none has fewer" is "each has one", which
            # costs a third of counting each row's.
            if len(fields) != len(texts) * width:
                return None
            if width == 2:
                if not all(map(contains, texts, repeat(delimiter))):
                    return None
            elif width > 2 and min(map(str.count, texts, repeat(delimiter))) < width - 1:
                return None
            return [fields[column::width] for column in range(width)]
        rows = self._rows
        if len(rows[0]) != width or len(set(map(len, rows))) != 1:
            return None
        return list(zip(*rows, strict=True))


class CsvSource:
    """Rows of a delimited text file, in blocks. Blank lines are skipped. A row's location is
    ``line N`` (the physical line it starts on, the header being line 1) and its raw content the
    original bytes of its line(s). A row that spans lines (a quoted field holding a line break,
    often a quote left open) says so in :meth:`note`.

    Text without quotes, NUL characters or lone carriage returns is split on the delimiter,
    many rows at once, which is what :mod:`csv` would do with it; from the first block that
    has any of those on, the rest of the file is read by :mod:`csv`. A file whose lines end in
    lone carriage returns (no line feed at all) is read that way too, a line at a time.

    ``labels`` (position → column name) are the columns the feed reads: a bad row's
    :meth:`note` says which of them holds bytes that are not valid in ``encoding``.
    """

    def __init__(
        self,
        path: Path,
        *,
        delimiter: str,
        encoding: str,
        header: bool,
        chunk_chars: int = CSV_CHUNK_CHARS,
        labels: Mapping[int, str] | None = None,
    ) -> None:
        self.path = path
        self.delimiter = delimiter
        self.encoding = encoding
        self.has_header = header
        self.header: list[str] | None = None
        self.chunk_chars = chunk_chars
        self.labels = dict(labels or {})
        self._line = 0
        # Encoding back must not add a byte-order mark to every row.
        self._raw_encoding = _raw_encoding(path, encoding)

    def blocks(self) -> Iterator[RowBlock]:
        # Undecodable bytes are carried as surrogates: they make their row bad (and come back
        # byte for byte in its dead letter) instead of ending the replay.
        with self.path.open(newline="", encoding=self.encoding, errors="surrogateescape") as handle:
            if self.has_header:
                self._read_header(handle)
            rest = ""
            while True:
                chunk = handle.read(self.chunk_chars)
                text = rest + chunk
                if chunk:
                    cut = text.rfind("\n") + 1
                    if not cut:
                        # No line feed: lines may end in lone carriage returns (old Mac
                        # files). Cut after the last one that cannot be the first half of a
                        # CRLF split between chunks; the lone CR sends the file to the csv
                        # module below, which reads it a line at a time.
                        cut = text.rfind("\r", 0, len(text) - 1) + 1
                    if not cut:
                        rest = text
                        continue
                    text, rest = text[:cut], text[cut:]
                elif not text:
                    return
                else:
                    rest = ""  # the last line, without a line break
                if '"' in text or "\0" in text or ("\r" in text and _lone_cr(text)):
                    # Complete the partial last line, so the csv module sees whole lines.
                    read = text + rest + handle.readline()
                    yield from self._csv_blocks(chain(io.StringIO(read, newline=""), handle))
                    return
                if "\r" in text:
                    text = text.replace("\r\n", "\n")
                block = self._split(text)
                if len(block):
                    yield block
                if not chunk:
                    return

    def _read_header(self, handle: TextIO) -> None:
        self.header, self._line = _first_row(iter(handle.readline, ""), self.delimiter)

    def _split(self, text: str) -> RowBlock:
        texts = text.split("\n")
        if not texts[-1]:
            texts.pop()
        first = self._line + 1
        self._line += len(texts)
        numbers: Sequence[int] = range(first, self._line + 1)
        if "" in texts:  # blank lines are skipped (lines of spaces: see blank())
            kept = [(number, line) for number, line in zip(numbers, texts, strict=True) if line]
            numbers = [number for number, _ in kept]
            texts = [line for _, line in kept]
        return RowBlock(None, numbers, texts, delimiter=self.delimiter)

    def _csv_blocks(self, lines: Iterator[str]) -> Iterator[RowBlock]:
        pending: list[str] = []
        reader = csv.reader(_tap(lines, pending), delimiter=self.delimiter)
        offset = self._line
        block = RowBlock([], [], [], last_lines=[])
        for row in reader:
            if row:
                last = offset + reader.line_num
                block.rows.append(row)
                # pending holds the record's physical lines: more than one if a quoted field
                # holds a line break.
                block.numbers.append(last - len(pending) + 1)  # type: ignore[attr-defined]
                block.last_lines.append(last)  # type: ignore[union-attr]
                block.texts.append("".join(pending).rstrip("\r\n"))  # type: ignore[attr-defined]
                if len(block.rows) >= CSV_BLOCK_ROWS:
                    yield block
                    block = RowBlock([], [], [], last_lines=[])
            pending.clear()
        if block.rows:
            yield block

    def location(self, block: RowBlock, index: int) -> str:
        return f"line {block.numbers[index]}"

    def blank(self, block: RowBlock, index: int) -> bool:
        """Whether row ``index`` is a line of nothing but spaces and tabs: blank, not a row.
        Asked only of a bad row (such a line never makes a good one), so that looking for
        them costs nothing on the way of good rows."""
        return not block.texts[index].strip(" \t\r\n")

    def note(self, block: RowBlock, index: int) -> str:
        """What to add to a bad row's reason: that a column it reads holds bytes that are not
        valid in the file's encoding, and that it spans lines, when it does."""
        return self._undecodable(block.rows[index]) + self._span(block, index)

    def _undecodable(self, row: Row) -> str:
        for position, label in sorted(self.labels.items()):
            if position < len(row) and _has_surrogates(row[position]):
                name = self._raw_encoding
                try:
                    shown = repr(row[position].encode(name, errors="surrogateescape"))
                except UnicodeError:
                    shown = ascii(row[position])
                return (
                    f"; column {label!r} holds bytes that are not valid {name} "
                    f"(encoding = {self.encoding!r}): {shown}; is the encoding right?"
                )
        return ""

    def _span(self, block: RowBlock, index: int) -> str:
        first = block.numbers[index]
        last = block.last_lines[index] if block.last_lines is not None else first
        if last == first:
            return ""
        if block.texts[index].count('"') % 2:
            return (
                f"; unclosed quote: the quoted field starting on line {first} runs on to line "
                f"{last}, taking in every line up to there"
            )
        return (
            f"; the row runs from line {first} to line {last}: a quoted field holds a line "
            "break (is a quote not closed where it should be?)"
        )

    def raw(self, block: RowBlock, index: int) -> bytes:
        return block.texts[index].encode(self._raw_encoding, errors="surrogateescape")


# --------------------------------------------------------------------------------------------
# Parquet


def open_parquet(path: Path) -> Any:
    """``pq.ParquetFile(path)``, or a ValueError naming the file when it is not one."""
    pq = require_pyarrow()
    import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        why = " ".join(str(exc).split())
        raise ValueError(f"{path}: not a readable Parquet file ({why})") from None


def read_parquet_header(path: Path) -> list[str]:
    parquet = open_parquet(path)
    try:
        return list(parquet.schema_arrow.names)
    finally:
        parquet.close()


def parquet_time_columns(path: Path) -> frozenset[int]:
    """Positions of the file's timestamp, date and time-of-day columns: values that are times
    already, read as such rather than as text in ``timestamp_format``."""
    import pyarrow as pa

    parquet = open_parquet(path)
    try:
        schema = parquet.schema_arrow
    finally:
        parquet.close()
    kinds = (pa.types.is_timestamp, pa.types.is_date, pa.types.is_time)
    return frozenset(
        position
        for position, column in enumerate(schema)
        if any(is_kind(column.type) for is_kind in kinds)
    )


def _column_values(column: Any) -> list[Any]:
    """A Parquet column's values as Python objects. Timestamps and times of nanoseconds (what
    pandas writes) are cut to whole microseconds, as Python's datetime holds them and as an
    ISO text with more digits is read."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped,import-not-found,unused-ignore]

    kind = column.type
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        # Floored as UTC instants: pyarrow floors a zoned timestamp in its local time, which
        # fails in the hour that comes twice when clocks go back.
        instants = column.cast(pa.timestamp("ns"))
        floored = pc.floor_temporal(instants, unit="microsecond").cast(pa.timestamp("us"))
        column = floored.cast(pa.timestamp("us", kind.tz))
    elif pa.types.is_time64(kind) and kind.unit == "ns":
        column = pc.floor_temporal(column, unit="microsecond").cast(pa.time64("us"))
    return column.to_pylist()  # type: ignore[no-any-return]


def _cell_text(value: Any) -> str:
    # Values become the text the CSV path parses. Decimal and integer columns are exact;
    # float columns are taken at their shortest repr (what was written, as far as a float
    # can tell): prefer decimal or string columns for prices.
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


class ParquetSource:
    """Rows of a Parquet file, one record batch at a time; locations are ``row N`` (1-based).
    Only the columns in ``needed`` are converted; the others read as empty text."""

    def __init__(self, path: Path, *, needed: Sequence[int]) -> None:
        self.path = path
        self.needed = frozenset(needed)
        self.header: list[str] | None = None
        # Why a value could not be read (a date after 9999), by its row number.
        self._unreadable: dict[int, str] = {}

    def blocks(self) -> Iterator[RowBlock]:
        import pyarrow as pa

        parquet = open_parquet(self.path)
        number = 0
        try:
            self.header = list(parquet.schema_arrow.names)
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
            while True:
                try:
                    batch = next(batches, None)
                    if batch is None:
                        return
                except (pa.ArrowException, OSError, ValueError, OverflowError) as exc:
                    why = " ".join(str(exc).split())  # pyarrow's messages span lines
                    raise BadInputError(
                        f"{self.path}: cannot read the Parquet file from row {number + 1} on "
                        f"({why})"
                    ) from exc
                self._unreadable.clear()  # the rows of the block before are done with
                columns = [
                    self._texts(batch.column(i), number + 1)
                    if i in self.needed
                    else repeat("", batch.num_rows)
                    for i in range(batch.num_columns)
                ]
                rows: list[Row] = list(zip(*columns, strict=False))
                yield RowBlock(rows, range(number + 1, number + len(rows) + 1))
                number += len(rows)
        finally:
            parquet.close()

    def _texts(self, column: Any, first_row: int) -> list[str]:
        """The column's values as text; one that Python cannot hold is read as empty (its row
        is then bad, and :meth:`note` says why) rather than fail the whole batch."""
        import pyarrow as pa

        try:
            return [_cell_text(value) for value in _column_values(column)]
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            whole = exc  # some values, or the column (a time zone pyarrow does not know)
        texts: list[str] = []
        for offset in range(len(column)):
            try:
                (value,) = _column_values(column.slice(offset, 1))
            except (pa.ArrowException, ValueError, OverflowError) as exc:
                why = " ".join(str(exc).split())
                self._unreadable[first_row + offset] = why
                texts.append("")
            else:
                texts.append(_cell_text(value))
        if len(column) and all(
            row in self._unreadable for row in range(first_row, first_row + len(column))
        ):
            why = " ".join(str(whole).split())
            raise BadInputError(
                f"{self.path}: cannot read the Parquet file from row {first_row} on ({why})"
            ) from whole
        return texts

    def location(self, block: RowBlock, index: int) -> str:
        return f"row {block.numbers[index]}"

    def blank(self, block: RowBlock, index: int) -> bool:
        return False

    def note(self, block: RowBlock, index: int) -> str:
        unreadable = self._unreadable.pop(block.numbers[index], None)
        if unreadable is None:
            return ""
        return f"; the Parquet file holds a value there that cannot be read ({unreadable})"

    def raw(self, block: RowBlock, index: int) -> bytes:
        """The row's values that the feed reads, as JSON."""
        shown = {
            name: text
            for i, (name, text) in enumerate(
                zip(self.header or [], block.rows[index], strict=False)
            )
            if i in self.needed
        }
        return json.dumps(shown).encode("utf-8")
