"""Plain JSON ticks from other systems, read through a field mapping into :class:`MarketTick`.

Numbers are read from their JSON text as :class:`~decimal.Decimal` (``101.25`` never passes
through a float). Prices may also be JSON strings. Timestamps are ISO 8601 strings with an
offset (``Z`` allowed) or epoch numbers (milliseconds unless ``ts_unit`` says otherwise).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from tradeloom.components import IdGenerator
from tradeloom.errors import DecodeError
from tradeloom.events import MarketTick
from tradeloom.numbers import decimal_from_text

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_UNIT = {
    "s": Decimal(1_000_000),
    "ms": Decimal(1_000),
    "auto": Decimal(1_000),
    "us": Decimal(1),
    "ns": Decimal("0.001"),
}
_MAX_MICROS = Decimal(10**20)  # beyond any datetime (timedelta.max is 8.64e19 us)
_OPTIONAL = ("last_quantity", "bid", "ask", "volume")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number tradeloom accepts")


class TickMapping:
    """Turns one JSON object into a :class:`MarketTick` (or raises
    :class:`~tradeloom.errors.DecodeError` with ``error_type`` ``json`` or ``schema``)."""

    def __init__(self, paths: dict[str, tuple[str, ...]], ts_unit: str = "auto") -> None:
        self.paths = paths
        self.ts_unit = ts_unit

    def label(self, name: str) -> str:
        path = ".".join(self.paths[name])
        return f"'{path}'" if path == name else f"'{path}' ({name})"

    def decode(
        self,
        data: bytes,
        ids: IdGenerator,
        record_ts: datetime | None = None,
        record_id: UUID | None = None,
    ) -> MarketTick:
        """``record_ts`` replaces the mapped timestamp field when given; ``record_id`` is the
        tick's id when ``event_id`` is not mapped (else one from ``ids``)."""
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"not UTF-8 text: invalid byte at offset {exc.start}", error_type="json"
            ) from None
        try:
            document = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise DecodeError(f"invalid JSON: {exc}", error_type="json") from None
        except RecursionError:
            raise DecodeError("invalid JSON: nested too deeply", error_type="json") from None
        if not isinstance(document, dict):
            raise DecodeError(
                f"expected a JSON object (one tick), got {type(document).__name__}",
                error_type="schema",
            )
        fields: dict[str, Any] = {}
        for name in ("instrument", "last_price", *_OPTIONAL):
            value = self._get(document, name)
            if value is not None:
                fields[name] = value
        for name in ("instrument", "last_price"):
            if name not in fields:
                raise DecodeError(f"field {self.label(name)} is missing", error_type="schema")
        if not isinstance(fields["instrument"], str):
            raise DecodeError(
                f"field {self.label('instrument')} must be a string, got "
                f"{_json_kind(fields['instrument'])}",
                error_type="schema",
            )
        for name in ("last_price", *_OPTIONAL):
            if name in fields:
                fields[name] = self._number(name, fields[name])
        fields["ts"] = record_ts if record_ts is not None else self._timestamp(document)
        fields["event_id"] = self._event_id(document, ids, record_id)
        try:
            return MarketTick(**fields)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False)[:5]:
                name = str(err["loc"][0]) if err["loc"] else "tick"
                where = self.label(name) if name in self.paths else name
                problems.append(f"field {where}: {err['msg'].removeprefix('Value error, ')}")
            raise DecodeError("; ".join(problems), error_type="schema") from None

    def _get(self, document: dict[str, Any], name: str) -> Any:
        path = self.paths.get(name)
        if path is None:
            return None
        value: Any = document
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    def _number(self, name: str, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise DecodeError(
                f"field {self.label(name)} must be a number or a numeric string, got "
                f"{_json_kind(value)}",
                error_type="schema",
            )
        try:
            number = decimal_from_text(value.strip()) if isinstance(value, str) else Decimal(value)
        except InvalidOperation:
            raise DecodeError(
                f"field {self.label(name)}: {value!r} is not a number", error_type="schema"
            ) from None
        return number

    def _timestamp(self, document: dict[str, Any]) -> datetime:
        value = self._get(document, "ts")
        label = self.label("ts")
        if value is None:
            raise DecodeError(f"field {label} is missing", error_type="schema")
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                raise DecodeError(
                    f"field {label}: {value!r} is not an ISO 8601 timestamp", error_type="schema"
                ) from None
            if parsed.utcoffset() is None:
                raise DecodeError(
                    f"field {label}: {value!r} has no UTC offset; add one (e.g. 'Z')",
                    error_type="schema",
                )
            try:
                return parsed.astimezone(UTC)
            except OverflowError:
                raise DecodeError(
                    f"field {label}: {value!r} is out of range in UTC", error_type="schema"
                ) from None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise DecodeError(
                f"field {label} must be an ISO 8601 string or an epoch number, got "
                f"{_json_kind(value)}",
                error_type="schema",
            )
        try:
            micros = Decimal(value) * _MICROS_PER_UNIT[self.ts_unit]
            if abs(micros) > _MAX_MICROS:  # before int(): 1e900000 would take seconds
                raise OverflowError
            return EPOCH + timedelta(microseconds=int(micros))
        except (OverflowError, ArithmeticError):  # decimal.Overflow: 1e999999 * 1000
            raise DecodeError(
                f"field {label}: {value} is out of range for epoch "
                f"{'ms' if self.ts_unit == 'auto' else self.ts_unit}",
                error_type="schema",
            ) from None

    def _event_id(self, document: dict[str, Any], ids: IdGenerator, record_id: UUID | None) -> UUID:
        value = self._get(document, "event_id")
        if value is None:
            return record_id if record_id is not None else ids.new_id()
        try:
            return UUID(str(value))
        except ValueError:
            raise DecodeError(
                f"field {self.label('event_id')}: {value!r} is not a UUID", error_type="schema"
            ) from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"
