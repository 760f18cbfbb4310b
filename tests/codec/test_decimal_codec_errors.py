"""Bad input to the ``decimal`` codec: every refusal is a DecodeError with a clear reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tradeloom.errors import DecodeError
from tradeloom.events import SCHEMA_VERSION, Bar, MarketTick, Signal
from tradeloom_decimal import DecimalJsonCodec

CODEC = DecimalJsonCodec()
TICK = MarketTick(
    event_id="018f0000-0000-7000-8000-00000000000a",
    ts=datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
    instrument="ORCL",
    last_price=Decimal("101.25"),
    bid=Decimal("101.20"),
)


def _tick_json(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(CODEC.encode(TICK))
    document.update(changes)
    return document


def _refusal(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        CODEC.decode(data)
    assert str(info.value) == info.value.reason
    return info.value


def _tick_with_price(literal: str) -> bytes:
    """The tick's JSON with last_price replaced by a raw JSON literal."""
    data = CODEC.encode(TICK)
    assert b'"last_price":"101.25"' in data
    return data.replace(b'"last_price":"101.25"', b'"last_price":' + literal.encode())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8 text: invalid byte at offset 0"),
        (b'{"type":"market_tick","instrument":"OR\xc3"}', "not UTF-8 text: invalid byte at offset"),
        (b"", "not JSON: the input is empty"),
        (b"   \n", "not JSON: the input is empty"),
        (b'{"type": "market_tick",', "invalid JSON: EOF while parsing"),
        (b"market_tick ORCL 101.25", "invalid JSON: expected value"),
        (b"{'type': 'bar'}", "invalid JSON: key must be a string"),
    ],
)
def test_undecodable_bytes_are_json_errors(data: bytes, expected: str) -> None:
    error = _refusal(data)
    assert error.error_type == "json"
    assert expected in error.reason


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[1, 2]", "expected a JSON object (one event), got an array"),
        (b'"market_tick"', "expected a JSON object (one event), got a string"),
        (b"42", "expected a JSON object (one event), got a number"),
        (b"null", "expected a JSON object (one event), got null"),
    ],
)
def test_json_that_is_not_an_object_is_a_schema_error(data: bytes, expected: str) -> None:
    error = _refusal(data)
    assert error.error_type == "schema"
    assert error.reason == expected


def test_unknown_event_type_names_the_type_and_the_known_ones() -> None:
    error = _refusal(json.dumps(_tick_json(type="quote")).encode())
    assert error.error_type == "schema"
    assert error.reason.startswith("unknown event type 'quote'; expected one of: market_tick, bar")
    assert "health_report" in error.reason


def test_missing_type_is_a_schema_error() -> None:
    document = _tick_json()
    del document["type"]
    error = _refusal(json.dumps(document).encode())
    assert error.error_type == "schema"
    assert error.reason.startswith("no 'type' field")


def test_missing_fields_are_each_named() -> None:
    error = _refusal(b'{"type": "fill", "instrument": "ORCL"}')
    assert error.error_type == "schema"
    for field in ("event_id", "ts", "order_id", "signal_id", "strategy_id", "side", "price"):
        assert f"fill field '{field}' is missing" in error.reason
    assert "'instrument'" not in error.reason


def test_unknown_field_is_named() -> None:
    error = _refusal(json.dumps(_tick_json(venue="XNYS")).encode())
    assert error.error_type == "schema"
    assert error.reason == "market_tick field 'venue' is not a known field"


@pytest.mark.parametrize(
    "literal",
    [
        '"NaN"',
        '"nan"',
        '"-NaN"',
        '"sNaN"',
        '"Infinity"',
        '"-Infinity"',
        '"inf"',
        '"-inf"',
        '"INF"',
        "NaN",  # bare JSON-ish constants: the parser accepts them, the schema must not
        "Infinity",
        "-Infinity",
    ],
)
def test_non_finite_prices_are_refused_in_every_spelling(literal: str) -> None:
    error = _refusal(_tick_with_price(literal))
    assert error.error_type == "schema"
    assert error.reason.startswith("market_tick field 'last_price': ")
    assert "finite" in error.reason


@pytest.mark.parametrize(
    ("literal", "shown"),
    [('"-1"', "-1"), ('"0"', "0"), ('"-0.00"', "-0.00"), ("-101.25", "-101.25")],
)
def test_non_positive_prices_are_refused_with_the_value(literal: str, shown: str) -> None:
    error = _refusal(_tick_with_price(literal))
    assert error.error_type == "schema"
    assert error.reason == f"market_tick field 'last_price': must be greater than zero, got {shown}"


def test_a_price_that_is_not_a_number_is_refused() -> None:
    error = _refusal(_tick_with_price('"101,25"'))
    assert error.error_type == "schema"
    assert error.reason.startswith(
        "market_tick field 'last_price': Input should be a valid decimal"
    )
    assert "'101,25'" in error.reason


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("101.25", "101.25"),
        ("101.250", "101.250"),
        ("0.1", "0.1"),  # 0.1 has no exact binary float: proves no float is involved
        ("1e-8", "1E-8"),
        ("1.5E+3", "1.5E+3"),
        ("1e400", "1E+400"),  # beyond float range, still exact
        ("101", "101"),
    ],
)
def test_json_numbers_in_money_fields_are_read_exactly(literal: str, expected: str) -> None:
    event = CODEC.decode(_tick_with_price(literal))
    assert isinstance(event, MarketTick)
    assert str(event.last_price) == expected
    assert event.bid == Decimal("101.20")


def test_json_numbers_inside_nested_events_are_read_exactly() -> None:
    signal = Signal(
        event_id="018f0000-0000-7000-8000-00000000000b",
        ts=datetime(2024, 5, 1, tzinfo=UTC),
        strategy_id="s",
        instrument="ORCL",
        side="buy",
        quantity=Decimal("10"),
        order_type="limit",
        limit_price=Decimal("99.5"),
    )
    document = {
        "type": "rejection",
        "event_id": "018f0000-0000-7000-8000-00000000000c",
        "ts": "2024-05-01T00:00:00Z",
        "signal": json.loads(CODEC.encode(signal)),
        "validator": "price_band",
        "reason": "too far",
    }
    document["signal"]["limit_price"] = "PLACEHOLDER"
    data = json.dumps(document).encode().replace(b'"PLACEHOLDER"', b"99.50")
    rejection = CODEC.decode(data)
    assert str(rejection.signal.limit_price) == "99.50"


def test_an_invalid_event_after_exact_number_reading_is_still_refused() -> None:
    data = _tick_with_price("101.25").replace(b'"bid":"101.20"', b'"bid":-3.5')
    error = _refusal(data)
    assert error.error_type == "schema"
    assert error.reason == "market_tick field 'bid': must be greater than zero, got -3.5"


def test_model_rules_across_fields_are_reported() -> None:
    bar = Bar(
        event_id="018f0000-0000-7000-8000-00000000000d",
        ts=datetime(2024, 5, 1, tzinfo=UTC),
        instrument="ORCL",
        open=Decimal("10"),
        high=Decimal("12"),
        low=Decimal("9"),
        close=Decimal("11"),
        volume=Decimal("0"),
        start=datetime(2024, 5, 1, tzinfo=UTC),
        end=datetime(2024, 5, 1, tzinfo=UTC),
    )
    data = CODEC.encode(bar).replace(b'"high":"12"', b'"high":"8"')
    error = _refusal(data)
    assert error.error_type == "schema"
    assert error.reason.startswith("bar: bar high 8 is below low 9")


def test_naive_timestamp_is_refused() -> None:
    error = _refusal(json.dumps(_tick_json(ts="2024-05-01T09:30:00")).encode())
    assert error.error_type == "schema"
    assert error.reason == "market_tick field 'ts': timestamp must be timezone-aware (UTC)"


def test_a_timestamp_with_no_utc_equivalent_is_refused() -> None:
    # datetime.astimezone() raised OverflowError through pydantic: no DecodeError, and one such
    # record stopped every consumer of its topic, again after each restart.
    error = _refusal(json.dumps(_tick_json(ts="0001-01-01T00:00:00+01:00")).encode())
    assert error.error_type == "schema"
    assert error.reason == (
        "market_tick field 'ts': timestamp 0001-01-01T00:00:00+01:00 is out of range in UTC"
    )


def test_bad_uuid_is_refused_with_the_value() -> None:
    error = _refusal(json.dumps(_tick_json(event_id="not-a-uuid")).encode())
    assert error.error_type == "schema"
    assert error.reason.startswith("market_tick field 'event_id': Input should be a valid UUID")
    assert "'not-a-uuid'" in error.reason


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 99, str(SCHEMA_VERSION + 1)])
def test_newer_schema_version_is_a_clear_error(version: int | str) -> None:
    error = _refusal(json.dumps(_tick_json(schema_version=version)).encode())
    assert error.error_type == "schema_version"
    assert error.reason == (
        f"schema_version {int(version)} is newer than the supported version {SCHEMA_VERSION}; "
        "upgrade tradeloom to read these events"
    )


def test_newer_schema_version_wins_over_the_fields_it_added() -> None:
    error = _refusal(json.dumps(_tick_json(schema_version=2, venue="XNYS")).encode())
    assert error.error_type == "schema_version"
    assert "schema_version 2 is newer" in error.reason


def test_a_newer_schema_version_written_with_a_fraction_wins_over_new_fields() -> None:
    document = _tick_json(venue="XNYS")
    del document["schema_version"]
    error = _refusal(b'{"schema_version": 2.0, ' + json.dumps(document)[1:].encode())
    assert error.error_type == "schema_version"
    assert "schema_version 2 is newer" in error.reason


@pytest.mark.parametrize("version", ["2E+5000", "2E+20000000"])
def test_a_schema_version_with_a_huge_exponent_is_a_decode_error(version: str) -> None:
    document = _tick_json(venue="XNYS")
    del document["schema_version"]
    data = f'{{"schema_version": {version}, '.encode() + json.dumps(document)[1:].encode()
    assert _refusal(data).error_type == "schema"


@pytest.mark.parametrize("extra", [{}, {"venue": "XNYS"}])
def test_newer_schema_version_of_a_nested_signal_is_refused(extra: dict[str, str]) -> None:
    # A field the newer version added is what makes it fail: the version is the reason.
    signal = Signal(
        event_id="018f0000-0000-7000-8000-00000000000e",
        ts=datetime(2024, 5, 1, tzinfo=UTC),
        strategy_id="s",
        instrument="ORCL",
        side="sell",
        quantity=Decimal("1"),
    )
    document = {
        "type": "rejection",
        "event_id": "018f0000-0000-7000-8000-00000000000f",
        "ts": "2024-05-01T00:00:00Z",
        "signal": {**json.loads(CODEC.encode(signal)), "schema_version": 7, **extra},
        "validator": "no_short",
        "reason": "short",
    }
    error = _refusal(json.dumps(document).encode())
    assert error.error_type == "schema_version"
    assert "schema_version 7 is newer" in error.reason


@pytest.mark.parametrize("version", ["\u00b2", "\u0663", "9" * 5000, "0x2", "2.5"])
def test_a_schema_version_text_not_of_ascii_digits_is_a_schema_error(version: str) -> None:
    # str.isdigit() takes "\u00b2" and "\u0663" (which int() refuses or reads as 3): each was a
    # ValueError, which stopped a consumer on the record at every restart.
    for document in (
        _tick_json(schema_version=version),
        {"type": "rejection", "signal": {"schema_version": version}},
    ):
        error = _refusal(json.dumps(document).encode())
        assert error.error_type == "schema"
        assert "schema_version': " in error.reason
        assert "integer" in error.reason


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("9" * 4000, "schema_version 9999999999... (4000 digits) is newer than"),
        ("-" + "9" * 4000, "schema_version -9999999999... (4000 digits) is not valid"),
    ],
)
def test_a_schema_version_of_thousands_of_digits_is_named_short(digits: str, expected: str) -> None:
    document = _tick_json()
    del document["schema_version"]
    data = f'{{"schema_version": {digits}, '.encode() + json.dumps(document)[1:].encode()
    error = _refusal(data)
    assert error.error_type == "schema_version"
    assert error.reason.startswith(expected)
    assert len(error.reason) < 200


@pytest.mark.parametrize("version", [0, -1])
def test_schema_version_below_one_is_refused(version: int) -> None:
    error = _refusal(json.dumps(_tick_json(schema_version=version)).encode())
    assert error.error_type == "schema_version"
    assert error.reason == f"schema_version {version} is not valid; versions start at 1"


def test_missing_schema_version_means_the_current_one() -> None:
    document = _tick_json()
    del document["schema_version"]
    assert CODEC.decode(json.dumps(document).encode()) == TICK


def test_many_errors_are_capped_in_the_reason() -> None:
    error = _refusal(
        b'{"type": "portfolio_snapshot", '
        + b", ".join(f'"x{i}": 1'.encode() for i in range(15))
        + b"}"
    )
    assert error.error_type == "schema"
    # 5 missing required fields + 15 unknown ones: the first 10 are spelled out.
    assert error.reason.count("portfolio_snapshot field") == 10
    assert error.reason.endswith("; and 10 more errors")


def test_wrong_argument_types_are_programming_errors() -> None:
    with pytest.raises(TypeError, match="can only decode bytes, not str"):
        CODEC.decode('{"type": "bar"}')  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="can only encode tradeloom events, not dict"):
        CODEC.encode({"type": "bar"})  # type: ignore[arg-type]
