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
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any, TextIO

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


def read_csv_header(path: Path, *, delimiter: str, encoding: str) -> list[str]:
    with path.open(newline="", encoding=encoding, errors="surrogateescape") as handle:
        for row in csv.reader(handle, delimiter=delimiter):
            if row:
                return row
    raise ValueError(f"{path}: the file is empty, it has no header line")


def _tap(lines: Iterator[str], pending: list[str]) -> Iterator[str]:
    # Keeps the physical lines of the record being parsed, for a dead letter's raw bytes.
    for line in lines:
        pending.append(line)
        yield line


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
            counts = list(map(str.count, texts, repeat(delimiter)))
            if min(counts) != width - 1 or max(counts) != width - 1:
                return None
            fields = delimiter.join(texts).split(delimiter)
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
    has any of those on, the rest of the file is read by :mod:`csv`.
    """

    def __init__(
        self,
        path: Path,
        *,
        delimiter: str,
        encoding: str,
        header: bool,
        chunk_chars: int = CSV_CHUNK_CHARS,
    ) -> None:
        self.path = path
        self.delimiter = delimiter
        self.encoding = encoding
        self.has_header = header
        self.header: list[str] | None = None
        self.chunk_chars = chunk_chars
        self._line = 0
        # Encoding back must not add a byte-order mark to every row.
        self._raw_encoding = "utf-8" if codecs.lookup(encoding).name == "utf-8-sig" else encoding

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
        reader = csv.reader(iter(handle.readline, ""), delimiter=self.delimiter)
        for row in reader:
            if row:
                self.header = row
                break
        self._line = reader.line_num

    def _split(self, text: str) -> RowBlock:
        texts = text.split("\n")
        if not texts[-1]:
            texts.pop()
        first = self._line + 1
        self._line += len(texts)
        numbers: Sequence[int] = range(first, self._line + 1)
        if "" in texts:  # blank lines are skipped
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

    def note(self, block: RowBlock, index: int) -> str:
        """What to add to a bad row's reason: that it spans lines, when it does."""
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


def read_parquet_header(path: Path) -> list[str]:
    pq = require_pyarrow()
    return list(pq.ParquetFile(path).schema_arrow.names)


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

    def blocks(self) -> Iterator[RowBlock]:
        pq = require_pyarrow()
        parquet = pq.ParquetFile(self.path)
        number = 0
        try:
            self.header = list(parquet.schema_arrow.names)
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                columns = [
                    [_cell_text(v) for v in batch.column(i).to_pylist()]
                    if i in self.needed
                    else repeat("", batch.num_rows)
                    for i in range(batch.num_columns)
                ]
                rows: list[Row] = list(zip(*columns, strict=False))
                yield RowBlock(rows, range(number + 1, number + len(rows) + 1))
                number += len(rows)
        finally:
            parquet.close()

    def location(self, block: RowBlock, index: int) -> str:
        return f"row {block.numbers[index]}"

    def note(self, block: RowBlock, index: int) -> str:
        return ""

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
