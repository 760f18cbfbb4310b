"""Helpers for persistence back ends: reading stored events back, with errors that say where.

A back end passes ``where`` (its file or table, and the row) so that
:class:`~tradeloom.errors.CorruptStateError` names exactly what is damaged.

A stored event whose ``schema_version`` is newer than this tradeloom's is refused with a
:class:`~tradeloom.errors.PersistenceError` (not a ``CorruptStateError``: nothing is damaged, it
was written by a newer tradeloom), as the codec refuses such an event on the wire. Reading it
as if it were of the current version could misread fields whose meaning changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from tradeloom.errors import CorruptStateError, PersistenceError
from tradeloom.events import SCHEMA_VERSION, Event, Fill, PortfolioSnapshot, Rejection
from tradeloom.params import describe_validation_error

__all__ = [
    "check_metadata",
    "decode_stored_fill",
    "decode_stored_rejection",
    "decode_stored_snapshot",
    "describe_validation_error",
    "journal_count",
]

_E = TypeVar("_E", bound=Event)


def _check_stored_version(version: Any, *, where: str, what: str) -> None:
    """Refuse a stored event of a newer (or an impossible) schema version."""
    if isinstance(version, bool) or not isinstance(version, int):
        return  # not a number: validation reports it
    if version > SCHEMA_VERSION:
        raise PersistenceError(
            f"{where}: stored {what} has schema_version {version}, newer than the supported "
            f"version {SCHEMA_VERSION}: written by a newer tradeloom; upgrade tradeloom to read "
            "this state"
        )
    if version < 1:
        raise CorruptStateError(
            f"{where}: stored {what} has schema_version {version}, which is not valid; "
            "versions start at 1"
        )


def _decode(model: type[_E], data: str | bytes, *, where: str, what: str) -> _E:
    try:
        event = model.model_validate_json(data)
    except ValidationError as exc:
        # An event of a newer version may not validate (new fields): say it is newer, not
        # damaged. Parsed again only on this error path, so loading stays one parse per row.
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if isinstance(document, dict):
            _check_stored_version(document.get("schema_version"), where=where, what=what)
        raise CorruptStateError(
            f"{where}: stored {what} is invalid: {describe_validation_error(exc)}"
        ) from None
    if event.schema_version != SCHEMA_VERSION:
        _check_stored_version(event.schema_version, where=where, what=what)
    return event


def journal_count(count: object, method: str = "load_fills_after", what: str = "fills") -> int:
    """``count`` of ``load_fills_after(count)`` (or of ``method``, counting ``what``) checked:
    a number of journaled events (an int, not a bool), zero or more."""
    if type(count) is not int or count < 0:
        raise ValueError(f"{method} needs a count of {what} (an int >= 0), not {count!r}")
    return count


def decode_stored_rejection(data: str | bytes, *, where: str) -> Rejection:
    """A journaled rejection, checked to be of a supported schema version."""
    return _decode(Rejection, data, where=where, what="rejection")


def decode_stored_fill(data: str | bytes, *, where: str, portfolio_id: str) -> Fill:
    """A journaled fill, checked to be of a supported schema version and to belong to the
    portfolio it is stored under."""
    fill = _decode(Fill, data, where=where, what="fill")
    if fill.strategy_id != portfolio_id:
        raise CorruptStateError(
            f"{where}: the stored fill belongs to portfolio {fill.strategy_id!r}"
        )
    return fill


def decode_stored_snapshot(
    data: str | bytes, *, where: str, portfolio_id: str
) -> PortfolioSnapshot:
    """A stored snapshot, checked to be of a supported schema version and to belong to the
    portfolio it is stored under."""
    snapshot = _decode(PortfolioSnapshot, data, where=where, what="snapshot")
    if snapshot.portfolio_id != portfolio_id:
        raise CorruptStateError(
            f"{where}: the stored snapshot belongs to portfolio {snapshot.portfolio_id!r}"
        )
    return snapshot


def check_metadata(items: Mapping[str, str]) -> dict[str, str]:
    """``items`` of ``save_metadata(items)`` checked: text keys (not empty) to text values;
    a ValueError otherwise."""
    if not isinstance(items, Mapping):
        raise ValueError(
            f"save_metadata takes a mapping of text to text, not {type(items).__name__}"
        )
    checked: dict[str, str] = {}
    for key, value in items.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValueError(
                f"save_metadata takes non-empty text keys and text values, got {key!r}: {value!r}"
            )
        checked[key] = value
    return checked
