"""Reading files row by row: CSV (any delimiter) and, when pyarrow is installed, Parquet.

A source yields each row as a sequence of text fields; while a row is handled, ``location()``
says where it is and ``raw()`` returns its original content as bytes, for a dead letter.
Nothing is read ahead beyond one row (CSV) or one record batch (Parquet), so memory stays
bounded whatever the file's size.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

Row = Sequence[str]

PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_BATCH_ROWS = 8192


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


class CsvSource:
    """Rows of a delimited text file. Blank lines are skipped. While a row is being handled,
    :meth:`location` says where it is (``line N``: the physical line it ends on, the header
    being line 1) and :meth:`raw` returns its original bytes."""

    def __init__(self, path: Path, *, delimiter: str, encoding: str, header: bool) -> None:
        self.path = path
        self.delimiter = delimiter
        self.encoding = encoding
        self.has_header = header
        self.header: list[str] | None = None
        self._pending: list[str] = []
        self._line = 0
        # Encoding back must not add a byte-order mark to every row.
        self._raw_encoding = "utf-8" if codecs.lookup(encoding).name == "utf-8-sig" else encoding

    def rows(self) -> Iterator[Row]:
        pending = self._pending
        # Undecodable bytes are carried as surrogates: they make their row bad (and come back
        # byte for byte in its dead letter) instead of ending the replay.
        with self.path.open(newline="", encoding=self.encoding, errors="surrogateescape") as handle:
            reader = csv.reader(_tap(iter(handle), pending), delimiter=self.delimiter)
            if self.has_header:
                for row in reader:
                    pending.clear()
                    if row:
                        self.header = row
                        break
            for row in reader:
                if row:
                    self._line = reader.line_num
                    yield row
                pending.clear()

    def location(self) -> str:
        return f"line {self._line}"

    def raw(self) -> bytes:
        text = "".join(self._pending).rstrip("\r\n")
        return text.encode(self._raw_encoding, errors="surrogateescape")


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
        self._number = 0
        self._row: Row = ()

    def rows(self) -> Iterator[Row]:
        pq = require_pyarrow()
        parquet = pq.ParquetFile(self.path)
        try:
            self.header = list(parquet.schema_arrow.names)
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                columns = [
                    [_cell_text(v) for v in batch.column(i).to_pylist()]
                    if i in self.needed
                    else repeat("", batch.num_rows)
                    for i in range(batch.num_columns)
                ]
                for row in zip(*columns, strict=False):
                    self._number += 1
                    self._row = row
                    yield row
        finally:
            parquet.close()

    def location(self) -> str:
        return f"row {self._number}"

    def raw(self) -> bytes:
        """The row's values that the feed reads, as JSON."""
        shown = {
            name: text
            for i, (name, text) in enumerate(zip(self.header or [], self._row, strict=False))
            if i in self.needed
        }
        return json.dumps(shown).encode("utf-8")
