"""Reading a number from text exactly, as a data file or a JSON feed writes it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def decimal_from_text(text: str) -> Decimal:
    """``Decimal(text)`` for numbers written as data: ASCII digits, an optional sign, point and
    exponent, with surrounding whitespace ignored. Raises InvalidOperation for the rest of what
    ``Decimal()`` accepts, Python's own spellings: underscores between digits (``"2_5"`` would
    be 25) and non-ASCII digits or spaces (``"١٢"`` would be 12)."""
    if not written_as_data(text):
        raise InvalidOperation
    return Decimal(text)


def written_as_data(text: str) -> bool:
    """Whether ``text`` (one number, or a column of them joined) holds none of Python's own
    spellings that :func:`decimal_from_text` refuses: one check for a whole column."""
    return "_" not in text and text.isascii()
