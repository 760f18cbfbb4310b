"""Reading a number from text exactly, as a data file or a JSON feed writes it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def decimal_from_text(text: str) -> Decimal:
    """``Decimal(text)`` for numbers written as data: ASCII digits, an optional sign, point and
    exponent, with surrounding whitespace ignored. Raises InvalidOperation for the rest of what
    ``Decimal()`` accepts, Python's own spellings: underscores between digits (``"2_5"`` would
    be 25) and non-ASCII digits or spaces (``"١٢"`` would be 12)."""
    if "_" in text or not text.isascii():
        raise InvalidOperation
    return Decimal(text)
