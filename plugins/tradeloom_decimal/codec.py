"""JSON codec that keeps Decimals exact: written as strings, read back digit for digit."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from tradeloom.components import Codec
from tradeloom.errors import DecodeError
from tradeloom.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Cancel,
    Event,
    Rejection,
    any_event_adapter,
)
from tradeloom_decimal.canonical import Decoder, proven_decoder

_MAX_REPORTED_ERRORS = 10
# A schema version written with an exponent (2E+5000) is not made into an int of that many
# digits: it would take the CPU for minutes, or fail to print.
_VERSION_DIGITS = 10
# Only plain ASCII digits: str.isdigit() also takes "²" and "٣", which int() refuses or reads.
_VERSION_TEXT = re.compile(rf"\s*[0-9]{{1,{_VERSION_DIGITS}}}\s*", re.ASCII)
_MAX_INPUT_REPR = 80
_KNOWN_TYPES = ", ".join(EVENT_TYPES)
_EVENT_CLASSES = frozenset(EVENT_TYPES.values())


class DecimalJsonCodec(Codec):
    """Encodes events as UTF-8 JSON objects and decodes them back into the right event class.

    Decimals are written as JSON strings (``"1.10"``, ``"1E+3"``) and read back exactly, so the
    value and its exponent survive. UUIDs are canonical strings and datetimes ISO 8601 in UTC.
    On decoding, a JSON number in a money field is read from its literal text (never through a
    binary float), so ``101.25`` becomes ``Decimal("101.25")``. Anything that is not a valid
    event raises :class:`~tradeloom.errors.DecodeError` with a ``reason`` naming the field.
    What this encoder writes is decoded by a faster path that gives the same events
    (:mod:`tradeloom_decimal.canonical`).
    """

    content_type = "application/json"

    def __init__(self) -> None:
        self._decode_canonical: Decoder | None = None  # proven on the first decode

    def encode(self, event: Event) -> bytes:
        """Serialize one event to JSON bytes."""
        if type(event) not in _EVENT_CLASSES and not isinstance(event, Event):
            raise TypeError(f"can only encode tradeloom events, not {type(event).__name__}")
        # The model's own serializer writes bytes directly; model_dump_json would build a str
        # first and need a second copy to encode it.
        return event.__pydantic_serializer__.to_json(event)

    def decode(self, data: bytes) -> Event:
        """Parse and validate one event, raising :class:`~tradeloom.errors.DecodeError`."""
        if type(data) is not bytes and not isinstance(data, bytes | bytearray):
            if not isinstance(data, memoryview):
                raise TypeError(f"can only decode bytes, not {type(data).__name__}")
            data = data.tobytes()
        # The encoder's own output, when valid, is read without the models' Python validators
        # (see canonical.py); anything else, valid or not, is validated by pydantic.
        decode_canonical = self._decode_canonical
        if decode_canonical is None:
            decode_canonical = self._decode_canonical = proven_decoder()[0]
        event = decode_canonical(data)
        if event is None:
            event = decode_validated(data)
        return event


def decode_validated(data: bytes | bytearray) -> Event:
    """Decode ``data`` with pydantic's validation: what :meth:`DecimalJsonCodec.decode` does with
    every document :func:`~tradeloom_decimal.canonical.decode_canonical` leaves to it (and the
    reference that fast path is tested against)."""
    try:
        event: Event = any_event_adapter.validate_json(data)
    except ValidationError as exc:
        event = _decode_slowly(data, exc)
    _check_version(event)
    return event


def _decode_slowly(data: bytes | bytearray, exc: ValidationError) -> Event:
    """The fast path failed: either explain why, or decode JSON numbers in money fields exactly.

    pydantic parses JSON numbers with a fraction or exponent into floats, which the event models
    refuse for money. Re-parsing with ``parse_float=Decimal`` reads them from their text instead.
    """
    errors = exc.errors(include_url=False)
    if any(err["type"] == "json_invalid" for err in errors):
        raise DecodeError(_json_reason(data, errors), error_type="json") from None
    try:
        document = json.loads(data, parse_float=Decimal, parse_constant=Decimal)
    except ValueError:  # pragma: no cover - pydantic accepted the same text as JSON
        raise DecodeError(_schema_reason(errors), error_type="schema") from None
    if isinstance(document, dict):
        _check_raw_version(document.get("schema_version"))
        nested = document.get("signal")  # a Rejection's or a Cancel's signal
        if isinstance(nested, dict):
            _check_raw_version(nested.get("schema_version"))
    if not any(_is_refused_float(err) for err in errors):
        raise DecodeError(_schema_reason(errors), error_type="schema") from None
    try:
        event: Event = any_event_adapter.validate_python(document)
    except ValidationError as exact_exc:
        raise DecodeError(
            _schema_reason(exact_exc.errors(include_url=False)), error_type="schema"
        ) from None
    return event


def _is_refused_float(err: Any) -> bool:
    # The event models' money types refuse float input with a value error.
    return err["type"] == "value_error" and isinstance(err.get("input"), float)


def _json_reason(data: bytes | bytearray, errors: list[Any]) -> str:
    if not data.strip():
        return "not JSON: the input is empty"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text: invalid byte at offset {exc.start} ({exc.reason})"
    detail = next(err["ctx"]["error"] for err in errors if err["type"] == "json_invalid")
    return f"invalid JSON: {detail}"


def _check_raw_version(version: Any) -> None:
    if isinstance(version, str) and _VERSION_TEXT.fullmatch(version):
        version = int(version)
    elif (
        isinstance(version, Decimal)
        and version.is_finite()
        and version.adjusted() < _VERSION_DIGITS
        and version == version.to_integral()
    ):
        version = int(version)  # 2.0: JSON numbers with a fraction are read as Decimals here
    if isinstance(version, int) and not isinstance(version, bool):
        _check_version_number(version)


def _check_version_number(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise DecodeError(
            f"schema_version {_shown(version)} is newer than the supported version "
            f"{SCHEMA_VERSION}; upgrade tradeloom to read these events",
            error_type="schema_version",
        )
    if version < 1:
        raise DecodeError(
            f"schema_version {_shown(version)} is not valid; versions start at 1",
            error_type="schema_version",
        )


def _shown(version: int) -> str:
    text = str(abs(version))  # a JSON integer of up to 4300 digits reaches here
    if len(text) <= _VERSION_DIGITS:
        return str(version)
    return f"{'-' if version < 0 else ''}{text[:_VERSION_DIGITS]}... ({len(text)} digits)"


def _check_version(event: Event) -> None:
    if event.schema_version != SCHEMA_VERSION:
        _check_version_number(event.schema_version)
    if isinstance(event, Rejection | Cancel) and event.signal.schema_version != SCHEMA_VERSION:
        _check_version_number(event.signal.schema_version)


def _schema_reason(errors: list[Any]) -> str:
    parts = [_describe(err) for err in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more errors")
    return "; ".join(parts)


def _describe(err: Any) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "union_tag_invalid":
        return f"unknown event type {err['ctx']['tag']!r}; expected one of: {_KNOWN_TYPES}"
    if kind == "union_tag_not_found":
        return f"no 'type' field; expected one of: {_KNOWN_TYPES}"
    if not loc and kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a JSON object (one event), got {_json_kind(err.get('input'))}"
    event_type, path = (str(loc[0]), loc[1:]) if loc else ("event", ())
    where = f"{event_type} field '{'.'.join(map(str, path))}'" if path else event_type
    if kind == "missing":
        return f"{where} is missing"
    if kind == "extra_forbidden":
        return f"{where} is not a known field"
    message = err["msg"].removeprefix("Value error, ")
    if kind != "value_error" and "input" in err and not isinstance(err["input"], dict | list):
        message = f"{message} (got {_short_repr(err['input'])})"
    return f"{where}: {message}"


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _short_repr(value: Any) -> str:
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= _MAX_INPUT_REPR else text[: _MAX_INPUT_REPR - 3] + "..."
