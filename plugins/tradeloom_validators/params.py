"""Checking validator parameters: exact Decimals only, never floats."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradeloom.params import DecimalParam, decimal_param

__all__ = ["DecimalParam", "per_instrument", "positive_decimal"]


def positive_decimal(value: Any, *, where: str) -> Decimal:
    """``value`` as a finite Decimal greater than zero, or a ValueError naming ``where``."""
    return decimal_param(value, where=where, positive=True)


def per_instrument(values: Mapping[str, Any] | None, *, where: str) -> dict[str, Decimal]:
    """A mapping of instrument to a positive Decimal, each value checked."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{where} must be a table of instrument = limit, not {type(values).__name__}"
        )
    checked: dict[str, Decimal] = {}
    for instrument, value in values.items():
        if not isinstance(instrument, str) or not instrument:
            raise ValueError(
                f"{where}: instrument names must be non-empty strings, got {instrument!r}"
            )
        checked[instrument] = positive_decimal(value, where=f"{where}[{instrument!r}]")
    return checked
