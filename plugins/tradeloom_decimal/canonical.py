"""Decoding the codec's own output without running the event models' Python validators.

pydantic validates a decoded event in about 4.5 us, a good part of it in the models' Python
validators (money, UTC), one call per field. The encoder always writes an event the same way:
Decimals as ``str(decimal)`` strings, UUIDs in lower case, timestamps as
``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``, every field present (``null`` when unset).
:func:`decode_canonical` reads a document only in that shape, with one pydantic-core validator
that calls no Python function but the C constructors ``Decimal`` and
:meth:`datetime.fromisoformat`, and accepts only:

- exactly the fields of the event type named by ``type``, none missing, none extra, and
  ``"schema_version":1`` (a JSON integer; any other version goes the usual way);
- every value in the one spelling that proves it valid: a positive Decimal is a string with no
  sign and a non-zero digit (a non-negative one: no sign; a signed amount: at most a ``-``),
  never a JSON number, ``NaN`` or ``Infinity``; a timestamp is the UTC text above, read by
  :meth:`datetime.fromisoformat` (which refuses dates and times that do not exist and gives
  tzinfo :data:`datetime.UTC`); an instrument is a string of 1 to 200 printable ASCII or
  Latin-1 characters (a name in another script goes to pydantic); an enum is
  one of its values; a count is a JSON integer of at least 0; a health report's age a finite
  JSON number of at least 0; a UUID anything pydantic reads as one (the same schema, so the
  same UUID); an optional field is that or ``null``;

and then checks in Python what the model validators check across fields (a bar's open and close
within its low and high, its start, end and ts in order; a limit price on a limit order or
signal and none on a market one, for a rejection's signal too; a snapshot's positions are
built the same way). The JSON text is parsed by the same parser as pydantic's own path, so key
order, whitespace, string escapes and repeated keys read the same.

The event is then built the way :mod:`tradeloom.runtime.trusted` builds one: its instance dict
and fields set are set directly, holding what pydantic would make (``Decimal(text)`` with its
exponent, a UUID, an aware datetime, enum members; every field set). Anything else returns
``None`` and the caller validates with pydantic, which also words every error.

This relies on how :mod:`tradeloom.events` declares each field. On first use
(:func:`proven_decoder`), each type's model is compared with the declarations this module was
written for (fields in order, annotations, validator functions, constraints, defaults, model
validators, config), and documents of each
type, including values at the edges of what the fast path accepts, must decode to exactly what
pydantic makes of them. A type that differs in any way is always validated by pydantic.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic.types import AllowInfNan
from pydantic_core import CoreSchema, PydanticUndefined, SchemaValidator
from pydantic_core import core_schema as cs

from tradeloom.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Amount,
    Bar,
    Cancel,
    Event,
    Fill,
    HealthReport,
    Instrument,
    MarketTick,
    NonNegative,
    NonNegativeAmount,
    Order,
    OrderType,
    PortfolioSnapshot,
    Position,
    Positive,
    Price,
    Rejection,
    Severity,
    Side,
    Signal,
    UtcDatetime,
    any_event_adapter,
)
from tradeloom.runtime.trusted import MODEL_SLOT_SETTERS

__all__ = [
    "EDGES",
    "agrees",
    "decode_canonical",
    "edge_documents",
    "fast_types",
    "fits",
    "proven_decoder",
    "same_event",
]

Decoder = Callable[[bytes | bytearray], Event | None]

# Patterns for pydantic-core's regex engine (not Python's re): anchored, ASCII classes only.
# What pydantic writes for a UTC datetime: whole seconds, or exactly six fraction digits.
_TS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?Z$"
# A finite Decimal as str() writes it, without sign; positive: a non-zero digit in the
# coefficient. At most 9 exponent digits: Decimal() reads those without an error.
_EXPONENT = "(?:E[+-][0-9]{1,9})?"
_POSITIVE = r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.0*[1-9][0-9]*)" + _EXPONENT + "$"
_NON_NEGATIVE = r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?" + _EXPONENT + "$"
_SIGNED = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?" + _EXPONENT + "$"
# The same, for the prices, quantities and volumes held to the events' range
# (tradeloom.events.LARGEST_EXPONENT). A zero may have any exponent; a non-zero number is read
# here only where it is surely in range: plain, with at most 100 digits before the point or 100
# zeros after "0.", or in str()'s scientific form, one digit before the point, whose exponent
# is then the adjusted one (-100000 to +99999). Other spellings go to pydantic.
_ZERO = r"0(?:\.0+)?" + _EXPONENT
_IN_RANGE = (
    r"(?:[1-9][0-9]{0,99}(?:\.[0-9]+)?|0\.0{0,99}[1-9][0-9]*"
    r"|[1-9](?:\.[0-9]+)?E(?:\+[0-9]{1,5}|-(?:[0-9]{1,5}|100000)))"
)
_POSITIVE_IN_RANGE = f"^{_IN_RANGE}$"
_NON_NEGATIVE_IN_RANGE = f"^(?:{_ZERO}|{_IN_RANGE})$"


def _spelled(pattern: str, make: Callable[[str], Any]) -> CoreSchema:
    """A JSON string matching ``pattern``, made into a value by ``make`` (a C function)."""
    return cs.no_info_after_validator_function(make, cs.str_schema(strict=True, pattern=pattern))


_LATIN_PRINTABLE = "^[\\x20-\\x7e\\xa1-\\xac\\xae-\\xff]+$"
"""What ``str.isprintable()`` accepts of ASCII and Latin-1: no control character, no
no-break space, no soft hyphen."""


_TIMESTAMP = _spelled(_TS, datetime.fromisoformat)
_POSITIVE_DECIMAL = _spelled(_POSITIVE, Decimal)
_NON_NEGATIVE_DECIMAL = _spelled(_NON_NEGATIVE, Decimal)
_SIGNED_DECIMAL = _spelled(_SIGNED, Decimal)
_PRICE_DECIMAL = _spelled(_POSITIVE_IN_RANGE, Decimal)
_VOLUME_DECIMAL = _spelled(_NON_NEGATIVE_IN_RANGE, Decimal)
# A UUID is read by the very schema the models' UUID fields compile to, so every spelling
# pydantic reads (upper case, braces, no hyphens) gives the same UUID on both paths.
_UUID_TEXT = cs.uuid_schema()
_KINDS: dict[str, CoreSchema] = {
    "version": cs.int_schema(strict=True, ge=SCHEMA_VERSION, le=SCHEMA_VERSION),
    "uuid": _UUID_TEXT,
    "uuid_optional": cs.nullable_schema(_UUID_TEXT),
    "ts": _TIMESTAMP,
    "ts_optional": cs.nullable_schema(_TIMESTAMP),
    # Printable ASCII and Latin-1 only (+10 ns; str.isprintable as well costs +65 ns): a
    # pattern over more of Unicode could disagree with Python's tables on new characters. Names
    # in other scripts are validated by pydantic.
    "instrument": cs.str_schema(
        strict=True, min_length=1, max_length=200, pattern=_LATIN_PRINTABLE
    ),
    "text": cs.str_schema(strict=True),
    "text_empty": cs.str_schema(strict=True),
    "side": cs.enum_schema(Side, list(Side), sub_type="str"),
    "severity": cs.enum_schema(Severity, list(Severity), sub_type="str"),
    "order_type": cs.enum_schema(OrderType, list(OrderType), sub_type="str"),
    "price": _PRICE_DECIMAL,
    "price_optional": cs.nullable_schema(_PRICE_DECIMAL),
    "non_negative": _VOLUME_DECIMAL,
    "non_negative_optional": cs.nullable_schema(_VOLUME_DECIMAL),
    "positive": _POSITIVE_DECIMAL,
    "amount_non_negative": _NON_NEGATIVE_DECIMAL,
    "amount_non_negative_optional": cs.nullable_schema(_NON_NEGATIVE_DECIMAL),
    "amount_non_negative_zero": _NON_NEGATIVE_DECIMAL,
    "amount": _SIGNED_DECIMAL,
    "amount_zero": _SIGNED_DECIMAL,
    "count": cs.int_schema(strict=True, ge=0),
    # A JSON number (an integer too) read the same way by both paths' parser, never a string.
    "seconds_optional": cs.nullable_schema(cs.float_schema(strict=True, ge=0, allow_inf_nan=False)),
}
"""How the fast path reads each kind of field; the kinds are the fields of ``_Declared``."""


class _Declared(BaseModel):
    """Each kind of field, declared as :mod:`tradeloom.events` declares it (see ``_fits``)."""

    version: int = SCHEMA_VERSION
    uuid: UUID
    ts: UtcDatetime
    ts_optional: UtcDatetime | None = None
    instrument: Instrument
    text: str
    side: Side
    order_type: OrderType = OrderType.MARKET
    price: Price
    price_optional: Price | None = None
    non_negative: NonNegative
    non_negative_optional: NonNegative | None = None
    positive: Positive
    amount_non_negative: NonNegativeAmount
    amount_non_negative_optional: NonNegativeAmount | None = None
    amount_non_negative_zero: NonNegativeAmount = Decimal(0)
    uuid_optional: UUID | None = None
    text_empty: str = ""
    severity: Severity
    amount: Amount
    amount_zero: Amount = Decimal(0)
    count: int = Field(default=0, ge=0)
    positions: dict[str, Position] = Field(default_factory=dict)
    seconds_optional: float | None = Field(default=None, ge=0, allow_inf_nan=False)


def _validator_names(metadata: list[Any]) -> list[Any]:
    """The metadata with each validator function replaced by its module and name."""
    named: list[Any] = []
    for item in metadata:
        if isinstance(item, AfterValidator | BeforeValidator):
            func = item.func
            named.append(
                (type(item), getattr(func, "__module__", None), getattr(func, "__name__", None))
            )
        else:
            named.append(item)
    return named


# The declarations the patterns above stand for: the money and time validators by name (their
# behaviour is pinned by the codec's tests), the constraints by value.
_EVENTS = "tradeloom.events"
_MONEY: list[Any] = [AllowInfNan(False), (BeforeValidator, _EVENTS, "_refuse_float")]
_INSTRUMENT: Any = Annotated[str, Field(min_length=1, max_length=200)]
_PRINTABLE = (AfterValidator, _EVENTS, "_printable")
_ALIASES: list[tuple[Any, list[Any]]] = [
    (Price, [*_MONEY, (AfterValidator, _EVENTS, "_positive_in_range")]),
    (NonNegative, [*_MONEY, (AfterValidator, _EVENTS, "_non_negative_in_range")]),
    (Positive, [*_MONEY, (AfterValidator, _EVENTS, "_positive")]),
    (NonNegativeAmount, [*_MONEY, (AfterValidator, _EVENTS, "_non_negative")]),
    (Amount, _MONEY),
    (UtcDatetime, [(AfterValidator, _EVENTS, "_utc")]),
    (Instrument, [*FieldInfo.from_annotation(_INSTRUMENT).metadata, _PRINTABLE]),
]

_INTENT = {
    "schema_version": "version",
    "event_id": "uuid",
    "ts": "ts",
    "strategy_id": "text",
    "instrument": "instrument",
    "side": "side",
    "quantity": "price",
    "order_type": "order_type",
    "limit_price": "price_optional",
    "market_ts": "ts_optional",
}
_SPECS: dict[type[Event], dict[str, str]] = {
    MarketTick: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "instrument": "instrument",
        "last_price": "price",
        "last_quantity": "price_optional",
        "bid": "price_optional",
        "ask": "price_optional",
        "volume": "non_negative_optional",
    },
    Bar: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "instrument": "instrument",
        "open": "price",
        "high": "price",
        "low": "price",
        "close": "price",
        "volume": "non_negative",
        "start": "ts",
        "end": "ts",
    },
    Signal: {**_INTENT, "type": "tag"},
    Order: {**_INTENT, "type": "tag", "signal_id": "uuid"},
    Rejection: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "signal": "signal",
        "validator": "text",
        "reason": "text",
    },
    Cancel: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "signal": "signal",
    },
    Fill: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "order_id": "uuid",
        "signal_id": "uuid",
        "strategy_id": "text",
        "instrument": "instrument",
        "side": "side",
        "quantity": "positive",
        "price": "positive",
        "commission": "amount_non_negative_zero",
    },
    PortfolioSnapshot: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "portfolio_id": "text",
        "cash": "amount",
        "positions": "positions",
        "equity": "amount",
        "commission_paid": "amount_non_negative_zero",
        "fills_applied": "count",
        "last_fill_id": "uuid_optional",
    },
    HealthReport: {
        "schema_version": "version",
        "event_id": "uuid",
        "ts": "ts",
        "type": "tag",
        "stage": "text",
        "check": "text_empty",
        "severity": "severity",
        "message": "text",
        "age_seconds": "seconds_optional",
    },
}
"""The kind of every field of the types decoded here, in the models' order."""

_MODEL_VALIDATORS: dict[type[Event], set[str]] = {
    Bar: {"_check_shape"},
    Signal: {"_check_limit"},
    Order: {"_check_limit"},
}
_POSITION = {
    "quantity": "amount",
    "average_price": "amount_non_negative",
    "realized_pnl": "amount_zero",
    "last_price": "amount_non_negative_optional",
}
"""The kinds of a snapshot's positions' fields."""
_CONFIG = {"frozen": True, "extra": "forbid", "use_enum_values": False}
_POSITION_CONFIG = {"frozen": True, "extra": "forbid"}


def _fingerprint(info: Any) -> tuple[Any, ...]:
    return (
        info.annotation,
        _validator_names(info.metadata),
        info.default,
        info.default_factory,
        info.alias,
        info.validation_alias,
        info.serialization_alias,
        info.exclude,
        info.discriminator,
        info.validate_default,
    )


def _aliases_fit() -> bool:
    return all(
        _validator_names(FieldInfo.from_annotation(alias).metadata) == expected
        for alias, expected in _ALIASES
    )


def fits(
    cls: type[BaseModel],
    spec: dict[str, str],
    model_validators: set[str],
    config: dict[str, Any] = _CONFIG,
) -> bool:
    """Whether ``cls`` declares what ``spec`` (field name to kind, in order) assumes, field by
    field, with exactly ``model_validators`` and ``config``."""
    decorators = cls.__pydantic_decorators__
    if (
        list(cls.model_fields) != list(spec)
        or dict(cls.model_config) != config
        or set(decorators.model_validators) != model_validators
        or decorators.field_validators
        or decorators.validators
        or decorators.root_validators
        or decorators.field_serializers
        or decorators.model_serializers
    ):
        return False
    declared = _Declared.model_fields
    plain = _fingerprint(declared["text"])[4:]  # no alias and the like: as a bare annotation
    for name, kind in spec.items():
        info = cls.model_fields[name]
        if kind == "tag":
            expected = (Literal[info.default], [], info.default, None, *plain)
        elif kind == "signal":
            expected = (Signal, [], PydanticUndefined, None, *plain)
        else:
            expected = _fingerprint(declared[kind])
        if _fingerprint(info) != expected:
            return False
    return True


def _fits(cls: type[Event]) -> bool:
    if cls is PortfolioSnapshot and not fits(Position, _POSITION, set(), _POSITION_CONFIG):
        return False
    return fits(cls, _SPECS[cls], _MODEL_VALIDATORS.get(cls, set()))


def _model_fields_schema(spec: dict[str, str]) -> CoreSchema:
    return cs.model_fields_schema(
        {name: cs.model_field(_KINDS[kind]) for name, kind in spec.items()},
        extra_behavior="forbid",
    )


def _fields_schema(cls: type[Event]) -> CoreSchema:
    fields = {}
    schema: CoreSchema
    for name, kind in _SPECS[cls].items():
        if kind == "tag":
            schema = cs.literal_schema([cls.model_fields[name].default])
        elif kind == "signal":
            schema = _fields_schema(Signal)
        elif kind == "positions":
            schema = cs.dict_schema(cs.str_schema(strict=True), _model_fields_schema(_POSITION))
        else:
            schema = _KINDS[kind]
        fields[name] = cs.model_field(schema)
    return cs.model_fields_schema(fields, extra_behavior="forbid")


_new = object.__new__
# The instance slots' own setters: half the cost of object.__setattr__ on a model.
_set_dict = MODEL_SLOT_SETTERS["set_dict"]
_set_fields = MODEL_SLOT_SETTERS["set_fields"]
_set_extra = MODEL_SLOT_SETTERS["set_extra"]
_set_private = MODEL_SLOT_SETTERS["set_private"]
_LIMIT = OrderType.LIMIT


def _event(cls: type[BaseModel], values: dict[str, Any], fields_set: set[str]) -> Any:
    # What pydantic's own construction leaves on an instance of a model with extra="forbid".
    event = _new(cls)
    _set_dict(event, values)
    _set_fields(event, fields_set)
    _set_extra(event, None)
    _set_private(event, None)
    return event


def _bar_rule(values: dict[str, Any]) -> bool:
    low = values["low"]
    high = values["high"]
    return bool(
        low <= values["open"] <= high
        and low <= values["close"] <= high
        and values["start"] <= values["end"] <= values["ts"]
    )


def _limit_rule(values: dict[str, Any]) -> bool:
    return (values["order_type"] is _LIMIT) is (values["limit_price"] is not None)


def _signal_rule(values: dict[str, Any]) -> bool:
    # The nested signal comes as (values, extra, fields set): check it and build it in place.
    signal_values, _, signal_fields_set = values["signal"]
    if not _limit_rule(signal_values):
        return False
    values["signal"] = _event(Signal, signal_values, signal_fields_set)
    return True


def _positions_rule(values: dict[str, Any]) -> bool:
    # Each position comes as (values, extra, fields set): build them in place.
    values["positions"] = {
        key: _event(Position, position, position_fields_set)
        for key, (position, _, position_fields_set) in values["positions"].items()
    }
    return True


_RULES: dict[type[Event], Callable[[dict[str, Any]], bool] | None] = {
    MarketTick: None,
    Bar: _bar_rule,
    Signal: _limit_rule,
    Order: _limit_rule,
    Rejection: _signal_rule,
    Cancel: _signal_rule,
    Fill: None,
    PortfolioSnapshot: _positions_rule,
    HealthReport: None,
}
"""What each type's model validators require of its values (``None``: nothing)."""

# The other types are only recognised (their fields are not read): a failed validation would
# cost more, as pydantic-core builds its errors.
_OTHER = cs.model_fields_schema({"type": cs.model_field(cs.str_schema())}, extra_behavior="ignore")


def _compile(classes: list[type[Event]]) -> Decoder:
    """The decoder of ``classes``, ``None`` for anything else."""
    tags = {cls.model_fields["type"].default: cls for cls in classes}
    choices: dict[str, CoreSchema] = {tag: _OTHER for tag in EVENT_TYPES}
    choices.update({tag: _fields_schema(cls) for tag, cls in tags.items()})
    validate_json = SchemaValidator(
        cs.tagged_union_schema(choices, discriminator="type")
    ).validate_json
    found_type = {tag: (cls, _RULES[cls]) for tag, cls in tags.items()}.get
    new = _new
    set_dict, set_fields, set_extra, set_private = _set_dict, _set_fields, _set_extra, _set_private

    def decode(data: bytes | bytearray) -> Event | None:
        try:
            values, _, fields_set = validate_json(data)
        except ValidationError:
            return None
        found = found_type(values["type"])
        if found is None:
            return None
        cls, rule = found
        if rule is not None and not rule(values):
            return None
        event = new(cls)  # as _event does, inline
        set_dict(event, values)
        set_fields(event, fields_set)
        set_extra(event, None)
        set_private(event, None)
        return event

    return decode


def _hash(event: BaseModel) -> int | None:
    try:
        return hash(event)
    except TypeError:  # a snapshot holds a dict
        return None


def same_event(built: Any, checked: Any) -> bool:
    """Whether two events are the same in every way a program can tell them apart: equal, with
    the same fields set, JSON and hash, and every value of the same type (a nested event
    compared the same way, a Decimal with the same exponent, a datetime with the same tzinfo
    object, a UUID with the same ``is_safe``)."""
    if type(built) is not type(checked) or not isinstance(built, BaseModel):
        return False
    if (
        built != checked
        or built.model_fields_set != checked.model_fields_set
        or built.model_dump_json() != checked.model_dump_json()
        or list(built.__dict__) != list(checked.__dict__)
        or built.__pydantic_extra__ != checked.__pydantic_extra__
        or built.__pydantic_private__ != checked.__pydantic_private__
        or _hash(built) != _hash(checked)
    ):
        return False
    for name, value in built.__dict__.items():
        other = checked.__dict__[name]
        if type(value) is not type(other):
            return False
        if isinstance(value, BaseModel) and not same_event(value, other):
            return False
        if isinstance(value, dict) and (
            list(value) != list(other)
            or not all(same_event(item, other[key]) for key, item in value.items())
        ):
            return False
        if isinstance(value, datetime) and value.tzinfo is not other.tzinfo:
            return False
        if isinstance(value, Decimal) and value.as_tuple() != other.as_tuple():
            return False
        if isinstance(value, UUID) and value.is_safe is not other.is_safe:
            return False
    return True


def _samples() -> list[Event]:
    """Two events of every type decoded here: every optional field set, then none set."""
    uid = UUID("01900000-0000-7000-8000-0000000000a1")
    ts = datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=UTC)
    whole = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    intent: dict[str, Any] = {
        "event_id": uid,
        "ts": ts,
        "strategy_id": "sample",
        "instrument": "SAMPLE",
        "side": Side.SELL,
        "quantity": Decimal("1.50"),
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal("1E+3"),
        "market_ts": ts,
    }
    market = {**intent, "ts": whole, "order_type": OrderType.MARKET, "limit_price": None}
    market["market_ts"] = None
    fill: dict[str, Any] = {
        "event_id": uid,
        "ts": ts,
        "order_id": uid,
        "signal_id": uid,
        "strategy_id": "sample",
        "instrument": "SAMPLE",
        "side": Side.BUY,
        "quantity": Decimal("2"),
        "price": Decimal("99.5"),
        "commission": Decimal("0.01"),
    }
    bar: dict[str, Any] = {
        "event_id": uid,
        "ts": ts,
        "instrument": "SAMPLE",
        "open": Decimal("10"),
        "high": Decimal("12.5"),
        "low": Decimal("9.75"),
        "close": Decimal("11"),
        "volume": Decimal("7875"),
        "start": whole - timedelta(minutes=1),
        "end": whole,
    }
    tick: dict[str, Any] = {"event_id": uid, "instrument": "SAMPLE", "last_price": Decimal("1")}
    quote = {"last_quantity": Decimal("0.001"), "bid": Decimal("0.90"), "ask": Decimal("1.1")}
    return [
        MarketTick(**tick, ts=ts, **quote, volume=Decimal("0")),
        MarketTick(**tick, ts=whole),
        Bar(**bar),
        Bar(**{**bar, "ts": whole, "volume": Decimal("0E-8")}),
        Signal(**intent),
        Signal(**market),
        Order(**intent, signal_id=uid),
        Order(**market, signal_id=uid),
        Rejection(event_id=uid, ts=ts, signal=Signal(**intent), validator="v", reason="why"),
        Rejection(event_id=uid, ts=whole, signal=Signal(**market), validator="", reason=""),
        Cancel(event_id=uid, ts=ts, signal=Signal(**intent)),
        Cancel(event_id=uid, ts=whole, signal=Signal(**market)),
        Fill(**fill),
        Fill(**{**fill, "ts": whole, "commission": Decimal(0)}),
        PortfolioSnapshot(
            event_id=uid,
            ts=ts,
            portfolio_id="sample",
            cash=Decimal("-12.50"),
            positions={
                "SAMPLE": Position(
                    quantity=Decimal("-3"),
                    average_price=Decimal("10.5"),
                    realized_pnl=Decimal("-0.25"),
                    last_price=Decimal("11"),
                ),
                "OTHER": Position(quantity=Decimal("0"), average_price=Decimal("0")),
            },
            equity=Decimal("100.00"),
            commission_paid=Decimal("0.02"),
            fills_applied=3,
            last_fill_id=uid,
        ),
        PortfolioSnapshot(
            event_id=uid, ts=whole, portfolio_id="", cash=Decimal(0), equity=Decimal(0)
        ),
        HealthReport(
            event_id=uid,
            ts=ts,
            stage="feed",
            check="freshness",
            severity=Severity.WARNING,
            message="late",
            age_seconds=12.5,
        ),
        HealthReport(event_id=uid, ts=whole, stage="", severity=Severity.INFO, message=""),
    ]


_UUIDS = [
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "{0190000A-0000-7000-8000-0000000000A1}",
    "not-a-uuid",
]
_TIMES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "2024-02-29T00:00:00.000000Z"]
_TEXTS = ["", "\x00\n", "z" * 1000]
_POSITIVES = [
    *("1E+99999", "9.99E+99999", "1E+100000", "99E+99998", "1E+999999999", "9" * 100 + "E+1"),
    *("1E-100000", "1E-100001", "0.1E-99999", "0." + "0" * 99 + "1", "1E-999999999"),
    *("0.0000001", "9" * 80, "9" * 101, "1.000", "0.1E+5"),
]
_ZEROS = ["0", "0.00", "0E-999999999", "0E+999999999"]
_AMOUNTS = [*_POSITIVES, *_ZEROS, "-0", "-0.00", "-1E+999999999", "-1E+99999", "-0.0000001"]
EDGES: dict[str, list[Any]] = {
    "uuid": _UUIDS,
    "uuid_optional": [*_UUIDS, None],
    "ts": _TIMES,
    "ts_optional": [*_TIMES, None],
    "instrument": [
        *("x", "é" * 200, '"\\/ ' + "y" * 196, "\xff" * 200, "ÿ" * 201, "A\x00", "\t", "A\x7f"),
        *("\xa0", "\xad", "\u2028", "\u0100", "\U0001f600", "Ω"),
    ],
    "text": _TEXTS,
    "text_empty": _TEXTS,
    "price": _POSITIVES,
    "price_optional": [*_POSITIVES, None],
    "non_negative": [*_ZEROS, *_POSITIVES],
    "non_negative_optional": [*_ZEROS, *_POSITIVES, None],
    "positive": _POSITIVES,
    "amount_non_negative": [*_ZEROS, *_POSITIVES],
    "amount_non_negative_optional": [*_ZEROS, *_POSITIVES, None],
    "amount_non_negative_zero": [*_ZEROS, *_POSITIVES],
    "amount": _AMOUNTS,
    "amount_zero": _AMOUNTS,
    "count": [0, 10**30],
    "seconds_optional": [0, 0.0, -0.0, 5, 5e-324, 1e300, None],
    "positions": [{}],
}
"""JSON values at the edges of what the fast path accepts, per kind of field. Used at import
and by the tests."""


def edge_documents(sample: Event) -> Iterator[bytes]:
    """``sample``'s JSON, then variants of it with one field at a time set to each edge value
    of its kind (a nested signal's or position's fields too). Many are invalid (a bar whose low
    is now above its high): what matters is that the fast path agrees with pydantic on each."""
    document = json.loads(sample.model_dump_json())
    yield sample.__pydantic_serializer__.to_json(sample)
    for path, kind in _paths(_SPECS[type(sample)], document):
        for value in EDGES.get(kind, []):
            variant = json.loads(json.dumps(document))
            target = variant
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            yield json.dumps(variant, ensure_ascii=False, separators=(",", ":")).encode()


def _paths(spec: dict[str, str], document: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    for name, kind in spec.items():
        yield (name,), kind
        if kind == "signal":
            for path, inner in _paths(_SPECS[Signal], document[name]):
                yield (name, *path), inner
        elif kind == "positions":
            for key in list(document[name])[:1]:
                for path, inner in _paths(_POSITION, document[name][key]):
                    yield (name, key, *path), inner


def agrees(decode: Decoder, data: bytes) -> bool:
    """Whether ``decode`` reads ``data`` as pydantic does, or leaves it to pydantic."""
    try:
        built = decode(data)
    except (ValueError, ArithmeticError):
        return False
    if built is None:
        return True
    try:
        checked = any_event_adapter.validate_json(data)
    except ValidationError:
        return False
    return same_event(built, checked)


def _proven(decode: Decoder, sample: Event, edges: bool) -> bool:
    data = sample.__pydantic_serializer__.to_json(sample)
    if decode(data) != sample or not agrees(decode, data):
        return False
    return not edges or all(agrees(decode, data) for data in edge_documents(sample))


def _decoder() -> tuple[Decoder, frozenset[str]]:
    samples = [sample for sample in _samples() if _fits(type(sample))]
    if not _aliases_fit() or not _fits(Signal):
        samples = []
    while True:
        classes = list(dict.fromkeys(type(sample) for sample in samples))
        decode = _compile(classes)
        failed = {
            type(sample)
            for position, sample in enumerate(samples)
            if not _proven(decode, sample, edges=position % 2 == 0)
        }
        if not failed:
            return decode, frozenset(cls.model_fields["type"].default for cls in classes)
        samples = [sample for sample in samples if type(sample) not in failed]


@functools.cache
def proven_decoder() -> tuple[Decoder, frozenset[str]]:
    """The fast decoder and the event types it decodes itself, built and proven against
    pydantic on first use (about 45 ms; a process that never decodes never pays it)."""
    return _decoder()


def decode_canonical(data: bytes | bytearray) -> Event | None:
    """The event ``data`` holds if it is in the encoder's canonical shape and valid, else
    ``None`` (the caller then validates it with pydantic)."""
    return proven_decoder()[0](data)


def fast_types() -> frozenset[str]:
    """The event types (``type`` tags) :func:`decode_canonical` decodes itself."""
    return proven_decoder()[1]
