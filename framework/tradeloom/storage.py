"""Helpers for persistence back ends: reading stored events back, with errors that say where.

A back end passes ``where`` (its file or table, and the row) so that
:class:`~tradeloom.errors.CorruptStateError` names exactly what is damaged.
"""

from __future__ import annotations

from pydantic import ValidationError

from tradeloom.errors import CorruptStateError
from tradeloom.events import Fill, PortfolioSnapshot


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of a validation error, by dotted field, on one line."""
    parts = []
    for item in error.errors()[:limit]:
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        parts.append(f"{field}: {item['msg']}")
    if error.error_count() > limit:
        parts.append(f"and {error.error_count() - limit} more")
    return "; ".join(parts)


def decode_stored_fill(data: str | bytes, *, where: str, portfolio_id: str) -> Fill:
    """A journaled fill, checked to belong to the portfolio it is stored under."""
    try:
        fill = Fill.model_validate_json(data)
    except ValidationError as exc:
        raise CorruptStateError(
            f"{where}: stored fill is invalid: {describe_validation_error(exc)}"
        ) from None
    if fill.strategy_id != portfolio_id:
        raise CorruptStateError(
            f"{where}: the stored fill belongs to portfolio {fill.strategy_id!r}"
        )
    return fill


def decode_stored_snapshot(
    data: str | bytes, *, where: str, portfolio_id: str
) -> PortfolioSnapshot:
    """A stored snapshot, checked to belong to the portfolio it is stored under."""
    try:
        snapshot = PortfolioSnapshot.model_validate_json(data)
    except ValidationError as exc:
        raise CorruptStateError(
            f"{where}: stored snapshot is invalid: {describe_validation_error(exc)}"
        ) from None
    if snapshot.portfolio_id != portfolio_id:
        raise CorruptStateError(
            f"{where}: the stored snapshot belongs to portfolio {snapshot.portfolio_id!r}"
        )
    return snapshot
