"""Checking validator parameters: exact Decimals only, never floats."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator

from tradeloom.events import out_of_range


def _refuse_inexact(value: Any) -> Any:
    if isinstance(value, float | bool):
        raise ValueError(_inexact_message("", value))
    return value


def _inexact_message(where: str, value: Any) -> str:
    subject = f"{where} must" if where else "must"
    if isinstance(value, bool):
        return f"{subject} be a number, not the boolean {value}"
    return (
        f"{subject} be a Decimal, an int or a numeric string, not the float {value!r} "
        f'(floats are inexact; write it as a string, e.g. "{value}")'
    )


DecimalParam = Annotated[Decimal, BeforeValidator(_refuse_inexact)]
"""A parameter given as a Decimal, an int or a numeric string; floats and booleans are refused.

The annotation lets the runtime's parameter check refuse floats too, before the constructor runs.
"""


def positive_decimal(value: Any, *, where: str) -> Decimal:
    """``value`` as a finite Decimal greater than zero, or a ValueError naming ``where``."""
    if isinstance(value, float | bool):
        raise ValueError(_inexact_message(where, value))
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    else:
        raise ValueError(
            f"{where} must be a Decimal, an int or a numeric string, not {type(value).__name__}"
        )
    if not number.is_finite():
        raise ValueError(f"{where} must be a finite number, got {number}")
    if number <= 0:
        raise ValueError(f"{where} must be greater than zero, got {number}")
    problem = out_of_range(number)
    if problem is not None:
        raise ValueError(f"{where} {problem}")
    return number


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
