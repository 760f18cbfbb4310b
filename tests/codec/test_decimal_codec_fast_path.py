"""The ``decimal`` codec's fast path (canonical.py) against pydantic's validation.

For the encoder's own output the fast path must build exactly the event pydantic builds; for
anything else (invalid, or valid but not in the canonical shape) it must step aside, so the
codec gives exactly the event or the error it gave before the fast path existed
(:func:`~tradeloom_decimal.codec.decode_validated`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradeloom.errors import DecodeError
from tradeloom.events import (
    Bar,
    Cancel,
    Event,
    Fill,
    HealthReport,
    Instrument,
    MarketTick,
    NonNegative,
    Order,
    OrderType,
    PortfolioSnapshot,
    Position,
    Price,
    Rejection,
    Severity,
    Side,
    Signal,
    any_event_adapter,
)
from tradeloom_decimal import DecimalJsonCodec
from tradeloom_decimal.canonical import (
    _SPECS,
    agrees,
    decode_canonical,
    edge_documents,
    fast_types,
    fits,
)
from tradeloom_decimal.codec import decode_validated

CODEC = DecimalJsonCodec()
FAST_TYPES = {
    "market_tick",
    "bar",
    "signal",
    "order",
    "rejection",
    "cancel",
    "fill",
    "portfolio_snapshot",
    "health_report",
}


def assert_same(built: Any, checked: Any) -> None:
    """``built`` is ``checked`` in every way a program can tell: class, equality, fields set,
    JSON, hash, field order, and each value's type (Decimal exponents, tzinfo UTC)."""
    assert type(built) is type(checked)
    assert built == checked
    assert built.model_fields_set == checked.model_fields_set
    assert built.model_dump_json() == checked.model_dump_json()
    if isinstance(built, PortfolioSnapshot):
        with pytest.raises(TypeError):
            hash(checked)  # a snapshot holds a dict: neither hashes
        with pytest.raises(TypeError):
            hash(built)
    else:
        assert hash(built) == hash(checked)
    assert list(built.__dict__) == list(checked.__dict__)
    assert built.__pydantic_extra__ == checked.__pydantic_extra__
    assert built.__pydantic_private__ == checked.__pydantic_private__
    for name, value in built.__dict__.items():
        other = checked.__dict__[name]
        assert type(value) is type(other), name
        if isinstance(value, Decimal):
            assert value.as_tuple() == other.as_tuple(), name
        if isinstance(value, datetime):
            assert value.tzinfo is UTC, name
            assert other.tzinfo is UTC, name
        if isinstance(value, UUID):
            assert value.is_safe is other.is_safe, name
        if isinstance(value, BaseModel):
            assert_same(value, other)
        if isinstance(value, dict):
            assert list(value) == list(other)
            for key, item in value.items():
                assert_same(item, other[key])


# --------------------------------------------------------------------------------------------
# The encoder's output: always the fast path, always what pydantic makes of it


def _decimal(coefficients: st.SearchStrategy[int]) -> st.SearchStrategy[Decimal]:
    return st.builds(lambda c, e: Decimal(f"{c}E{e}"), coefficients, st.integers(-40, 40))


positive = _decimal(st.integers(1, 10**40)) | st.sampled_from(
    [
        Decimal(text)
        for text in ("1E+3", "1.10", "0.00000001", "1E-30", "9" * 50, "9.9E+99999", "1E-100000")
    ]
)
non_negative = positive | st.sampled_from(
    [Decimal(text) for text in ("0", "0.00", "0E-8", "0E+3", "0E-999999")]
)
text = st.text(max_size=30)
# The fast path reads instruments of printable ASCII and Latin-1 (other scripts: see
# test_an_instrument_in_another_script_is_read_by_pydantic).
instrument = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF).filter(str.isprintable),
    min_size=1,
    max_size=200,
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), UTC]),
) | st.sampled_from(
    [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
)
ids = st.uuids() | st.sampled_from([UUID(int=0), UUID(int=2**128 - 1)])


def _common(draw: st.DrawFn) -> dict[str, Any]:
    return {"event_id": draw(ids), "ts": draw(moments)}


@st.composite
def ticks(draw: st.DrawFn) -> MarketTick:
    optional = {
        name: draw(st.none() | kind)
        for name, kind in [
            ("last_quantity", positive),
            ("bid", positive),
            ("ask", positive),
            ("volume", non_negative),
        ]
    }
    unset = draw(st.sets(st.sampled_from(sorted(optional))))
    return MarketTick(
        **_common(draw),
        instrument=draw(instrument),
        last_price=draw(positive),
        **{name: value for name, value in optional.items() if name not in unset},
    )


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    low, a, b, high = sorted(draw(st.lists(positive, min_size=4, max_size=4)))
    start = draw(moments).astimezone(UTC).replace(year=2000)
    end = start + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))
    return Bar(
        event_id=draw(ids),
        ts=end + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=1))),
        instrument=draw(instrument),
        open=a,
        high=high,
        low=low,
        close=b,
        volume=draw(non_negative),
        start=start,
        end=end,
    )


def _intent(draw: st.DrawFn) -> dict[str, Any]:
    order_type = draw(st.sampled_from([None, *OrderType]))
    values: dict[str, Any] = {
        **_common(draw),
        "strategy_id": draw(text),
        "instrument": draw(instrument),
        "side": draw(st.sampled_from(Side)),
        "quantity": draw(positive),
    }
    if order_type is not None:
        values["order_type"] = order_type
    if order_type is OrderType.LIMIT:
        values["limit_price"] = draw(positive)
    market_ts = draw(st.none() | moments)
    if market_ts is not None or draw(st.booleans()):
        values["market_ts"] = market_ts
    return values


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    return Signal(**_intent(draw))


@st.composite
def orders(draw: st.DrawFn) -> Order:
    return Order(**_intent(draw), signal_id=draw(ids))


@st.composite
def rejections(draw: st.DrawFn) -> Rejection:
    return Rejection(
        **_common(draw), signal=draw(signals()), validator=draw(text), reason=draw(st.text())
    )


@st.composite
def cancels(draw: st.DrawFn) -> Cancel:
    return Cancel(**_common(draw), signal=draw(signals()))


@st.composite
def fills(draw: st.DrawFn) -> Fill:
    commission = draw(st.none() | non_negative)
    return Fill(
        **_common(draw),
        order_id=draw(ids),
        signal_id=draw(ids),
        strategy_id=draw(text),
        instrument=draw(instrument),
        side=draw(st.sampled_from(Side)),
        quantity=draw(positive),
        price=draw(positive),
        **({} if commission is None else {"commission": commission}),
    )


amount = non_negative | positive.map(lambda d: -d) | st.just(Decimal("-0"))


@st.composite
def positions(draw: st.DrawFn) -> Position:
    realized = draw(st.none() | amount)
    return Position(
        quantity=draw(amount),
        average_price=draw(non_negative),
        last_price=draw(st.none() | non_negative),
        **({} if realized is None else {"realized_pnl": realized}),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> PortfolioSnapshot:
    optional = {
        "positions": draw(st.dictionaries(text, positions(), max_size=4)),
        "commission_paid": draw(non_negative),
        "fills_applied": draw(st.integers(0, 10**20)),
        "last_fill_id": draw(st.none() | ids),
    }
    unset = draw(st.sets(st.sampled_from(sorted(optional))))
    return PortfolioSnapshot(
        **_common(draw),
        portfolio_id=draw(text),
        cash=draw(amount),
        equity=draw(amount),
        **{name: value for name, value in optional.items() if name not in unset},
    )


@st.composite
def health_reports(draw: st.DrawFn) -> HealthReport:
    optional = {
        "check": draw(text),
        "age_seconds": draw(
            st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False)
        ),
    }
    unset = draw(st.sets(st.sampled_from(sorted(optional))))
    return HealthReport(
        **_common(draw),
        stage=draw(text),
        severity=draw(st.sampled_from(Severity)),
        message=draw(st.text()),
        **{name: value for name, value in optional.items() if name not in unset},
    )


events = st.one_of(
    ticks(),
    bars(),
    signals(),
    orders(),
    rejections(),
    cancels(),
    fills(),
    snapshots(),
    health_reports(),
)


@settings(max_examples=600, deadline=None)
@given(events)
def test_the_encoders_output_takes_the_fast_path_and_is_what_pydantic_makes(event: Event) -> None:
    data = CODEC.encode(event)
    fast = decode_canonical(data)
    assert fast is not None, data
    assert_same(fast, any_event_adapter.validate_json(data))
    assert_same(fast, decode_validated(data))
    assert fast == event
    assert CODEC.encode(fast) == data  # what the fast path builds encodes byte for byte the same
    assert_same(CODEC.decode(data), fast)


def test_every_stock_type_has_a_fast_path() -> None:
    # If this fails, tradeloom.events changed a declaration canonical.py relies on: update its
    # _SPECS / _ALIASES (and these tests) to the new rules.
    assert fast_types() == FAST_TYPES


# --------------------------------------------------------------------------------------------
# Values at the edges of what the fast path accepts


def _samples() -> list[Event]:
    uid = UUID("018f0000-0000-7000-8000-00000000001a")
    ts = datetime(2024, 5, 1, 9, 30, 0, 250000, tzinfo=UTC)
    limit: dict[str, Any] = {
        "event_id": uid,
        "ts": ts,
        "strategy_id": "sma",
        "instrument": "ORCL",
        "side": Side.BUY,
        "quantity": Decimal("10"),
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal("99.50"),
        "market_ts": ts - timedelta(seconds=1),
    }
    return [
        MarketTick(
            event_id=uid,
            ts=ts,
            instrument="ORCL",
            last_price=Decimal("101.25"),
            last_quantity=Decimal("5"),
            bid=Decimal("101.20"),
            ask=Decimal("101.30"),
            volume=Decimal("1E+3"),
        ),
        Bar(
            event_id=uid,
            ts=ts,
            instrument="ORCL",
            open=Decimal("10"),
            high=Decimal("12"),
            low=Decimal("9"),
            close=Decimal("11"),
            volume=Decimal("0.00"),
            start=ts - timedelta(minutes=1),
            end=ts,
        ),
        Signal(**limit),
        Order(**limit, signal_id=uid),
        Rejection(event_id=uid, ts=ts, signal=Signal(**limit), validator="band", reason="far"),
        Fill(
            event_id=uid,
            ts=ts,
            order_id=uid,
            signal_id=uid,
            strategy_id="sma",
            instrument="ORCL",
            side=Side.SELL,
            quantity=Decimal("10"),
            price=Decimal("99.50"),
            commission=Decimal("0.01"),
        ),
        PortfolioSnapshot(
            event_id=uid,
            ts=ts,
            portfolio_id="sma",
            cash=Decimal("-1.50"),
            positions={
                "ORCL": Position(
                    quantity=Decimal("10"),
                    average_price=Decimal("99.50"),
                    realized_pnl=Decimal("-0.25"),
                    last_price=Decimal("101.25"),
                )
            },
            equity=Decimal("1011.00"),
            commission_paid=Decimal("0.01"),
            fills_applied=3,
            last_fill_id=uid,
        ),
        HealthReport(
            event_id=uid,
            ts=ts,
            stage="feed",
            check="freshness",
            severity=Severity.WARNING,
            message="no data for 12.5s",
            age_seconds=12.5,
        ),
    ]


SAMPLES = {event.type: event for event in _samples()}


@pytest.mark.parametrize("sample", _samples(), ids=lambda event: event.type)
def test_edge_values_decode_as_pydantic_decodes_them(sample: Event) -> None:
    taken = 0
    for data in edge_documents(sample):
        fast = decode_canonical(data)
        try:
            checked = decode_validated(data)
        except DecodeError:
            assert fast is None, data
            continue
        if fast is not None:
            taken += 1
            assert_same(fast, checked)
        assert_same(CODEC.decode(data), checked)
    assert taken >= 10  # the edges are real: most of them take the fast path


@pytest.mark.parametrize("price", ["9.99E+99999", "1E-100000"])
def test_extreme_decimals_keep_their_exponent_on_the_fast_path(price: str) -> None:
    data = CODEC.encode(SAMPLES["market_tick"]).replace(
        b'"last_price":"101.25"', f'"last_price":"{price}"'.encode()
    )
    fast = decode_canonical(data)
    assert fast is not None
    assert fast.last_price.as_tuple() == Decimal(price).as_tuple()
    assert_same(fast, any_event_adapter.validate_json(data))


# --------------------------------------------------------------------------------------------
# Near the canonical shape but not in it: the fast path steps aside, the codec answers as before


def _outcome(decode: Callable[[bytes], Event], data: bytes) -> tuple[str, Any, Any]:
    try:
        event = decode(data)
    except DecodeError as error:
        return "refused", error.error_type, error.reason
    return "decoded", event.model_dump_json(), sorted(event.model_fields_set)


def _replace(event_type: str, old: str, new: str) -> bytes:
    data = CODEC.encode(SAMPLES[event_type])
    assert old.encode() in data, (event_type, old)
    return data.replace(old.encode(), new.encode(), 1)


def _edit(event_type: str, change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(CODEC.encode(SAMPLES[event_type]))
    change(document)
    return json.dumps(document, separators=(",", ":")).encode()


TICK_ID = '"event_id":"018f0000-0000-7000-8000-00000000001a"'
TICK_TS = '"ts":"2024-05-01T09:30:00.250000Z"'
NEAR_MISSES: dict[str, tuple[bytes, str]] = {
    # money
    "negative price": (_replace("market_tick", '"101.25"', '"-1"'), "refused"),
    "zero price": (_replace("market_tick", '"101.25"', '"0"'), "refused"),
    "zero price with places": (_replace("market_tick", '"101.25"', '"0.00"'), "refused"),
    "zero price with exponent": (_replace("market_tick", '"101.25"', '"0E+3"'), "refused"),
    "NaN price": (_replace("market_tick", '"101.25"', '"NaN"'), "refused"),
    "Infinity price": (_replace("market_tick", '"101.25"', '"Infinity"'), "refused"),
    "bare NaN price": (_replace("market_tick", '"101.25"', "NaN"), "refused"),
    "price not a number": (_replace("market_tick", '"101.25"', '"101,25"'), "refused"),
    "float price 1.5": (_replace("market_tick", '"101.25"', "1.5"), "decoded"),
    "negative float price": (_replace("market_tick", '"101.25"', "-1.5"), "refused"),
    "integer price": (_replace("market_tick", '"101.25"', "101"), "decoded"),
    "price in lower-case exponent": (_replace("market_tick", '"101.25"', '"1e3"'), "decoded"),
    "price with plus sign": (_replace("market_tick", '"101.25"', '"+101.25"'), "decoded"),
    "price with leading zero": (_replace("market_tick", '"101.25"', '"0101.25"'), "decoded"),
    "price with underscore": (_replace("market_tick", '"101.25"', '"1_01.25"'), "decoded"),
    "price with spaces": (_replace("market_tick", '"101.25"', '" 101.25 "'), "decoded"),
    "price with a 10-digit exponent": (
        _replace("market_tick", '"101.25"', '"1E+1000000000"'),
        "refused",
    ),
    "price above the range": (_replace("market_tick", '"101.25"', '"1E+100000"'), "refused"),
    "price above the range, not in str()'s form": (
        _replace("market_tick", '"101.25"', '"10E+99999"'),
        "refused",
    ),
    "price below the range": (_replace("market_tick", '"101.25"', '"1E-100001"'), "refused"),
    "price in range, not in str()'s form": (
        _replace("market_tick", '"101.25"', '"10E+99998"'),
        "decoded",
    ),
    "volume above the range": (_replace("market_tick", '"1E+3"', '"1E+100000"'), "refused"),
    "price null": (_replace("market_tick", '"101.25"', "null"), "refused"),
    "volume minus zero": (_replace("market_tick", '"1E+3"', '"-0"'), "decoded"),
    "volume negative": (_replace("market_tick", '"1E+3"', '"-0.01"'), "refused"),
    "commission negative": (_replace("fill", '"0.01"', '"-0.01"'), "refused"),
    "quantity zero": (_replace("fill", '"quantity":"10"', '"quantity":"0"'), "refused"),
    # shape
    "extra key": (_edit("market_tick", lambda d: d.update(venue="XNYS")), "refused"),
    "missing optional key": (_edit("market_tick", lambda d: d.pop("bid")), "decoded"),
    "missing required key": (_edit("market_tick", lambda d: d.pop("last_price")), "refused"),
    "missing schema_version": (_edit("market_tick", lambda d: d.pop("schema_version")), "decoded"),
    "missing type": (_edit("market_tick", lambda d: d.pop("type")), "refused"),
    "unknown type": (_edit("market_tick", lambda d: d.update(type="quote")), "refused"),
    "another type's tag": (_edit("market_tick", lambda d: d.update(type="bar")), "refused"),
    "duplicated key, other value": (
        _replace("market_tick", '"bid":"101.20"', '"bid":"101.20","bid":"-1"'),
        "refused",
    ),
    "array": (b"[" + CODEC.encode(SAMPLES["market_tick"]) + b"]", "refused"),
    "truncated": (CODEC.encode(SAMPLES["market_tick"])[:-1], "refused"),
    "not UTF-8": (
        _replace("market_tick", '"ORCL"', '"OR\xff"').replace(b"\xc3\xbf", b"\xff"),
        "refused",
    ),
    # versions
    "schema_version 0": (
        _replace("market_tick", '"schema_version":1', '"schema_version":0'),
        "refused",
    ),
    "schema_version 2": (
        _replace("market_tick", '"schema_version":1', '"schema_version":2'),
        "refused",
    ),
    "schema_version as text": (
        _replace("market_tick", '"schema_version":1', '"schema_version":"1"'),
        "decoded",
    ),
    "schema_version as float": (
        _replace("market_tick", '"schema_version":1', '"schema_version":1.0'),
        "decoded",
    ),
    "schema_version true": (
        _replace("market_tick", '"schema_version":1', '"schema_version":true'),
        "decoded",
    ),
    # time
    "offset +01:00": (_replace("market_tick", "250000Z", "250000+01:00"), "decoded"),
    "offset +00:00": (_replace("market_tick", "250000Z", "250000+00:00"), "decoded"),
    "lower-case z": (_replace("market_tick", "250000Z", "250000z"), "decoded"),
    "milliseconds": (_replace("market_tick", ".250000Z", ".250Z"), "decoded"),
    "nanoseconds": (_replace("market_tick", ".250000Z", ".250000001Z"), "decoded"),
    "naive": (_replace("market_tick", ".250000Z", ".250000"), "refused"),
    "space for T": (_replace("market_tick", "01T09:30", "01 09:30"), "decoded"),
    "no such day": (_replace("market_tick", "2024-05-01T09", "2023-02-29T09"), "refused"),
    "hour 24": (_replace("market_tick", "T09:30:00", "T24:00:00"), "refused"),
    "leap second": (_replace("market_tick", "T09:30:00", "T23:59:60"), "refused"),
    "year 0": (_replace("market_tick", "2024-05-01T09", "0000-05-01T09"), "refused"),
    "epoch number": (_replace("market_tick", TICK_TS, '"ts":1714555800'), "decoded"),
    # ids
    "UUID with a hyphen moved": (
        _replace("market_tick", "018f0000-0000", "018f000-00000"),
        "refused",
    ),
    "not a UUID": (_replace("market_tick", TICK_ID, '"event_id":"not-a-uuid"'), "refused"),
    # instruments, strings, enums
    "empty instrument": (_replace("market_tick", '"ORCL"', '""'), "refused"),
    "instrument of 201 characters": (
        _replace("market_tick", '"ORCL"', f'"{"X" * 201}"'),
        "refused",
    ),
    "instrument a number": (_replace("market_tick", '"ORCL"', "42"), "refused"),
    "instrument with a raw control character": (
        _replace("market_tick", '"ORCL"', '"OR\nCL"'),
        "refused",
    ),
    "instrument with an escaped NUL": (
        _replace("market_tick", '"ORCL"', '"ORCL\\u0000"'),
        "refused",
    ),
    "instrument with an escaped line break": (
        _replace("fill", '"ORCL"', '"OR\\nCL"'),
        "refused",
    ),
    "instrument with a line separator beyond Latin-1": (
        _replace("order", '"ORCL"', '"日経\\u2028225"'),
        "refused",
    ),
    "strategy_id a number": (_replace("fill", '"strategy_id":"sma"', '"strategy_id":5'), "refused"),
    "side upper case": (_replace("fill", '"sell"', '"SELL"'), "refused"),
    "order_type upper case": (_replace("order", '"limit"', '"LIMIT"'), "refused"),
    # rules across fields
    "limit order without price": (
        _replace("order", '"limit_price":"99.50"', '"limit_price":null'),
        "refused",
    ),
    "market order with price": (_replace("order", '"limit"', '"market"'), "refused"),
    "bar high below low": (_replace("bar", '"high":"12"', '"high":"8"'), "refused"),
    "bar open above high": (_replace("bar", '"open":"10"', '"open":"13"'), "refused"),
    "bar close below low": (_replace("bar", '"close":"11"', '"close":"8.99"'), "refused"),
    "bar ends before it starts": (
        _replace("bar", '"start":"2024-05-01T09:29', '"start":"2024-05-01T09:31'),
        "refused",
    ),
    "bar known before its end": (
        _replace("bar", '"end":"2024-05-01T09:30:00.250000Z"', '"end":"2024-05-01T09:30:01Z"'),
        "refused",
    ),
    # a rejection's signal
    "nested signal with negative quantity": (
        _replace("rejection", '"quantity":"10"', '"quantity":"-10"'),
        "refused",
    ),
    "nested limit signal without price": (
        _replace("rejection", '"limit_price":"99.50"', '"limit_price":null'),
        "refused",
    ),
    "nested signal of a newer schema": (
        _replace(
            "rejection",
            '"signal":{"schema_version":1',
            '"signal":{"schema_version":2',
        ),
        "refused",
    ),
    "nested signal with an extra key": (
        _edit("rejection", lambda d: d["signal"].update(venue="XNYS")),
        "refused",
    ),
    "nested signal missing its market_ts": (
        _edit("rejection", lambda d: d["signal"].pop("market_ts")),
        "decoded",
    ),
    # a snapshot and its positions
    "cash NaN": (_replace("portfolio_snapshot", '"-1.50"', '"NaN"'), "refused"),
    "cash a float": (_replace("portfolio_snapshot", '"-1.50"', "-1.50"), "decoded"),
    "fills_applied negative": (
        _replace("portfolio_snapshot", '"fills_applied":3', '"fills_applied":-1'),
        "refused",
    ),
    "fills_applied as text": (
        _replace("portfolio_snapshot", '"fills_applied":3', '"fills_applied":"3"'),
        "decoded",
    ),
    "fills_applied as float": (
        _replace("portfolio_snapshot", '"fills_applied":3', '"fills_applied":3.0'),
        "decoded",
    ),
    "fills_applied fractional": (
        _replace("portfolio_snapshot", '"fills_applied":3', '"fills_applied":3.5'),
        "refused",
    ),
    "position quantity in lower-case exponent": (
        _replace("portfolio_snapshot", '"quantity":"10"', '"quantity":"1e1"'),
        "decoded",
    ),
    "position average price negative": (
        _replace("portfolio_snapshot", '"average_price":"99.50"', '"average_price":"-1"'),
        "refused",
    ),
    "position with an extra key": (
        _edit("portfolio_snapshot", lambda d: d["positions"]["ORCL"].update(venue="X")),
        "refused",
    ),
    "position missing realized_pnl": (
        _edit("portfolio_snapshot", lambda d: d["positions"]["ORCL"].pop("realized_pnl")),
        "decoded",
    ),
    "positions an array": (
        _edit("portfolio_snapshot", lambda d: d.update(positions=[])),
        "refused",
    ),
    # a health report
    "age negative": (_replace("health_report", "12.5}", "-1}"), "refused"),
    "age as text": (_replace("health_report", "12.5}", '"12.5"}'), "decoded"),
    "age Infinity": (_replace("health_report", "12.5}", '"Infinity"}'), "refused"),
    "age NaN": (_replace("health_report", "12.5}", "NaN}"), "refused"),
    "severity unknown": (_replace("health_report", '"warning"', '"WARN"'), "refused"),
    "check missing": (_edit("health_report", lambda d: d.pop("check")), "decoded"),
    "nested order instead of a signal": (
        _edit("rejection", lambda d: d["signal"].update(type="order")),
        "refused",
    ),
}


@pytest.mark.parametrize(("data", "expected"), NEAR_MISSES.values(), ids=list(NEAR_MISSES))
def test_near_misses_leave_the_fast_path_and_decode_as_before(data: bytes, expected: str) -> None:
    assert decode_canonical(data) is None
    outcome = _outcome(CODEC.decode, data)
    assert outcome == _outcome(decode_validated, data)
    assert outcome[0] == expected, outcome


@pytest.mark.parametrize("instrument", ["ORCL", "BRK B", "ÄÖÜ ÿ", "¡~"])
def test_a_printable_latin_instrument_takes_the_fast_path(instrument: str) -> None:
    data = _replace("market_tick", '"ORCL"', json.dumps(instrument, ensure_ascii=False))
    fast = decode_canonical(data)
    assert fast is not None and fast.instrument == instrument  # type: ignore[attr-defined]
    assert_same(fast, decode_validated(data))


@pytest.mark.parametrize("instrument", ["日経225", "Ω", "\U0001f600", "Ā"])
def test_an_instrument_in_another_script_is_read_by_pydantic(instrument: str) -> None:
    data = _replace("market_tick", '"ORCL"', json.dumps(instrument, ensure_ascii=False))
    assert decode_canonical(data) is None
    decoded = CODEC.decode(data)
    assert decoded.instrument == instrument  # type: ignore[attr-defined]
    assert_same(decoded, decode_validated(data))


def test_an_unprintable_instrument_is_refused_naming_the_field() -> None:
    with pytest.raises(DecodeError) as info:
        CODEC.decode(NEAR_MISSES["instrument with an escaped NUL"][0])
    assert info.value.error_type == "schema"
    assert info.value.reason.startswith("market_tick field 'instrument': must be printable text")


def test_a_refusal_reads_as_before_the_fast_path() -> None:
    data = NEAR_MISSES["nested signal with negative quantity"][0]
    with pytest.raises(DecodeError) as info:
        CODEC.decode(data)
    assert info.value.error_type == "schema"
    assert info.value.reason == (
        "rejection field 'signal.quantity': must be greater than zero, got -10"
    )


LAYOUTS: dict[str, bytes] = {
    "indented": json.dumps(json.loads(CODEC.encode(SAMPLES["fill"])), indent=2).encode(),
    "keys reordered": json.dumps(
        dict(reversed(json.loads(CODEC.encode(SAMPLES["rejection"])).items()))
    ).encode(),
    "trailing newline": CODEC.encode(SAMPLES["market_tick"]) + b"\n",
    "escaped ASCII": _replace("market_tick", '"ORCL"', '"\\u004fRCL"'),
    "escapes in a string": _replace("market_tick", '"ORCL"', '"OR\\u0043L\\/\\u00e9"'),
    # The parser keeps a repeated key's last value, on both paths.
    "repeated key": _replace("market_tick", '"bid":"101.20"', '"bid":"-1","bid":"101.20"'),
    # A UUID is read by pydantic-core's own UUID schema on both paths: any spelling it takes.
    "upper-case UUID": _replace("market_tick", "00000000001a", "00000000001A"),
    "UUID without hyphens": _replace(
        "market_tick", TICK_ID, '"event_id":"018f00000000700080000000000001a0"'
    ),
    "braced UUID": _replace(
        "market_tick", TICK_ID, '"event_id":"{018f0000-0000-7000-8000-00000000001a}"'
    ),
    "URN UUID": _replace(
        "market_tick", TICK_ID, '"event_id":"urn:uuid:018f0000-0000-7000-8000-00000000001a"'
    ),
    "nested signal with an upper-case UUID": _edit(
        "rejection", lambda d: d["signal"].update(event_id=d["event_id"].upper())
    ),
    "last_fill_id upper case": _replace("portfolio_snapshot", '00001a"}', '00001A"}'),
}


@pytest.mark.parametrize("data", LAYOUTS.values(), ids=list(LAYOUTS))
def test_json_layout_is_read_by_the_same_parser_on_both_paths(data: bytes) -> None:
    # Whitespace, key order, escapes and repeated keys are JSON syntax, not values: the fast
    # path reads them with pydantic's own parser and builds the same event. UUIDs likewise go
    # through pydantic-core's own UUID schema.
    fast = decode_canonical(data)
    assert fast is not None
    assert_same(fast, decode_validated(data))
    assert _outcome(CODEC.decode, data) == _outcome(decode_validated, data)


# --------------------------------------------------------------------------------------------
# The guards: a changed model declaration, or a decoder that disagrees, turns the fast path off


class _SameTick(Event):
    type: Literal["market_tick"] = "market_tick"
    instrument: Instrument
    last_price: Price
    last_quantity: Price | None = None
    bid: Price | None = None
    ask: Price | None = None
    volume: NonNegative | None = None


def test_the_guard_accepts_the_declarations_it_was_written_for() -> None:
    assert fits(_SameTick, _SPECS[MarketTick], set())


def _changed_tick(**fields: Any) -> type[BaseModel]:
    annotations = dict(_SameTick.__annotations__)
    namespace: dict[str, Any] = {"__annotations__": annotations}
    for name, (annotation, default) in fields.items():
        annotations[name] = annotation
        if default is not ...:
            namespace[name] = default
    return type("ChangedTick", (Event,), {**namespace, "__module__": __name__})


def _tick_with_model_validator() -> type[BaseModel]:
    class Checked(_SameTick):
        @model_validator(mode="after")
        def _check(self) -> Checked:
            return self

    return Checked


def _tick_with_config(**config: Any) -> type[BaseModel]:
    class Configured(_SameTick):
        model_config = ConfigDict(**config)

    return Configured


CHANGED: dict[str, Callable[[], type[BaseModel]]] = {
    "shorter instrument": lambda: _changed_tick(
        instrument=(Annotated[str, Field(min_length=1, max_length=100)], ...)
    ),
    "price by a pydantic constraint": lambda: _changed_tick(
        last_price=(Annotated[Decimal, Field(gt=0)], ...)
    ),
    "volume positive": lambda: _changed_tick(volume=(Price | None, None)),
    "bid with a default": lambda: _changed_tick(bid=(Price | None, Decimal("1"))),
    "bid required": lambda: _changed_tick(bid=(Price | None, ...)),
    "instrument aliased": lambda: _changed_tick(
        instrument=(Annotated[Instrument, Field(alias="symbol")], ...)
    ),
    "an extra field": lambda: _changed_tick(venue=(str, "")),
    "a model validator": _tick_with_model_validator,
    "strict": lambda: _tick_with_config(strict=True),
    "stripped strings": lambda: _tick_with_config(str_strip_whitespace=True),
}


@pytest.mark.parametrize("make", CHANGED.values(), ids=list(CHANGED))
def test_the_guard_refuses_a_changed_declaration(make: Callable[[], type[BaseModel]]) -> None:
    assert not fits(make(), _SPECS[MarketTick], set())


def test_the_proof_refuses_a_decoder_that_differs_from_pydantic() -> None:
    data = CODEC.encode(SAMPLES["market_tick"])
    event = any_event_adapter.validate_json(data)
    assert agrees(lambda _: None, data)  # stepping aside is always right
    assert agrees(lambda _: any_event_adapter.validate_json(data), data)
    normalised = event.model_copy(update={"bid": event.bid.normalize()})  # 101.2, not 101.20
    assert normalised == event
    assert not agrees(lambda _: normalised, data)
    other_zone = event.model_copy(
        update={"ts": event.ts.replace(tzinfo=timezone(timedelta(0), "Z"))}
    )
    assert other_zone.ts.tzinfo is not UTC
    assert not agrees(lambda _: other_zone, data)
    fewer_fields = MarketTick(**{k: v for k, v in event if k != "ask"})
    assert not agrees(lambda _: fewer_fields, data)


def test_pydantic_refusing_what_a_decoder_accepts_is_a_disagreement() -> None:
    data = NEAR_MISSES["negative price"][0]
    with pytest.raises(ValidationError):
        any_event_adapter.validate_json(data)
    assert not agrees(lambda _: SAMPLES["market_tick"], data)
