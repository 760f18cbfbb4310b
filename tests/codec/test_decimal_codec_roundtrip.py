"""Property tests: every event type survives the ``decimal`` codec exactly."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tradeloom.events import (
    Bar,
    Event,
    Fill,
    HealthReport,
    MarketTick,
    Order,
    OrderType,
    PortfolioSnapshot,
    Position,
    Rejection,
    Severity,
    Side,
    Signal,
)
from tradeloom_decimal import DecimalJsonCodec
from tradeloom_decimal.plugin import tradeloom_register_codecs

CODEC = DecimalJsonCodec()


def _decimal(digits: st.SearchStrategy[int]) -> st.SearchStrategy[Decimal]:
    # Built from (coefficient, exponent) so trailing zeros and exponents vary: 110E-2 is "1.10".
    return st.builds(lambda c, e: Decimal(f"{c}E{e}"), digits, st.integers(-12, 8))


positive = _decimal(st.integers(1, 10**20)) | st.sampled_from(
    [Decimal("1.10"), Decimal("1E+3"), Decimal("0.00000001"), Decimal("101.2500")]
)
non_negative = positive | _decimal(st.just(0)) | st.just(Decimal("0.00"))
amount = non_negative | positive.map(lambda d: -d) | st.just(Decimal("-0"))
text = st.text(min_size=1, max_size=20)
# An instrument is printable (str.isprintable: no control or format character, no separator
# but the space).
instrument = st.text(
    st.characters(exclude_categories=("C", "Z")) | st.just(" "), min_size=1, max_size=20
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)), UTC]
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones
)
common: dict[str, Any] = {"event_id": st.uuids(), "ts": moments}


@st.composite
def ticks(draw: st.DrawFn) -> MarketTick:
    return MarketTick(
        **{k: draw(v) for k, v in common.items()},
        instrument=draw(instrument),
        last_price=draw(positive),
        last_quantity=draw(st.none() | positive),
        bid=draw(st.none() | positive),
        ask=draw(st.none() | positive),
        volume=draw(st.none() | non_negative),
    )


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    low, a, b, high = sorted(draw(st.lists(positive, min_size=4, max_size=4)))
    if draw(st.booleans()):
        a, b = b, a  # a falling bar
    start = draw(moments)
    end = start + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))
    return Bar(
        event_id=draw(st.uuids()),
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


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    order_type = draw(st.sampled_from(OrderType))
    return Signal(
        **{k: draw(v) for k, v in common.items()},
        strategy_id=draw(text),
        instrument=draw(instrument),
        side=draw(st.sampled_from(Side)),
        quantity=draw(positive),
        order_type=order_type,
        limit_price=draw(positive) if order_type is OrderType.LIMIT else None,
    )


@st.composite
def orders(draw: st.DrawFn) -> Order:
    signal = draw(signals())
    return Order(
        **{k: draw(v) for k, v in common.items()},
        signal_id=signal.event_id,
        strategy_id=signal.strategy_id,
        instrument=signal.instrument,
        side=signal.side,
        quantity=signal.quantity,
        order_type=signal.order_type,
        limit_price=signal.limit_price,
    )


@st.composite
def rejections(draw: st.DrawFn) -> Rejection:
    return Rejection(
        **{k: draw(v) for k, v in common.items()},
        signal=draw(signals()),
        validator=draw(text),
        reason=draw(st.text()),
    )


@st.composite
def fills(draw: st.DrawFn) -> Fill:
    return Fill(
        **{k: draw(v) for k, v in common.items()},
        order_id=draw(st.uuids()),
        signal_id=draw(st.uuids()),
        strategy_id=draw(text),
        instrument=draw(instrument),
        side=draw(st.sampled_from(Side)),
        quantity=draw(positive),
        price=draw(positive),
        commission=draw(non_negative),
    )


positions = st.builds(
    Position,
    quantity=amount,
    average_price=non_negative,
    realized_pnl=amount,
    last_price=st.none() | non_negative,
)


@st.composite
def snapshots(draw: st.DrawFn) -> PortfolioSnapshot:
    return PortfolioSnapshot(
        **{k: draw(v) for k, v in common.items()},
        portfolio_id=draw(text),
        cash=draw(amount),
        positions=draw(st.dictionaries(text, positions, min_size=1, max_size=5)),
        equity=draw(amount),
        commission_paid=draw(non_negative),
        fills_applied=draw(st.integers(0, 10**9)),
        last_fill_id=draw(st.none() | st.uuids()),
    )


@st.composite
def health_reports(draw: st.DrawFn) -> HealthReport:
    return HealthReport(
        **{k: draw(v) for k, v in common.items()},
        stage=draw(text),
        check=draw(st.text(max_size=20)),
        severity=draw(st.sampled_from(Severity)),
        message=draw(st.text()),
        age_seconds=draw(st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False)),
    )


def _decimals(value: Any, path: str = "") -> list[tuple[str, Decimal]]:
    """Every Decimal inside an event, with where it sits."""
    if isinstance(value, Decimal):
        return [(path, value)]
    if isinstance(value, BaseModel):
        return [
            found
            for name in type(value).model_fields
            for found in _decimals(getattr(value, name), f"{path}.{name}")
        ]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _decimals(v, f"{path}[{k!r}]")]
    return []


def _assert_round_trip(event: Event) -> None:
    data = CODEC.encode(event)
    assert isinstance(data, bytes)
    decoded = CODEC.decode(data)
    assert type(decoded) is type(event)
    assert decoded == event
    # Equality of Decimals ignores the exponent (1.1 == 1.10); the wire must not.
    original = [(p, d.as_tuple(), str(d)) for p, d in _decimals(event)]
    restored = [(p, d.as_tuple(), str(d)) for p, d in _decimals(decoded)]
    assert restored == original
    assert decoded.ts.utcoffset() == timedelta(0)
    assert CODEC.encode(decoded) == data


@given(ticks())
def test_market_tick_round_trips(event: MarketTick) -> None:
    _assert_round_trip(event)


@given(bars())
def test_bar_round_trips(event: Bar) -> None:
    _assert_round_trip(event)


@given(signals())
def test_signal_round_trips(event: Signal) -> None:
    _assert_round_trip(event)


@given(orders())
def test_order_round_trips(event: Order) -> None:
    _assert_round_trip(event)


@given(rejections())
def test_rejection_round_trips(event: Rejection) -> None:
    _assert_round_trip(event)


@given(fills())
def test_fill_round_trips(event: Fill) -> None:
    _assert_round_trip(event)


@given(snapshots())
def test_portfolio_snapshot_with_positions_round_trips(event: PortfolioSnapshot) -> None:
    _assert_round_trip(event)
    assert CODEC.decode(CODEC.encode(event)).positions.keys() == event.positions.keys()


@given(health_reports())
def test_health_report_round_trips(event: HealthReport) -> None:
    _assert_round_trip(event)


def test_decimal_exponent_survives_on_the_wire() -> None:
    tick = MarketTick(
        event_id="018f0000-0000-7000-8000-000000000001",
        ts=datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        instrument="ORCL",
        last_price=Decimal("1.10"),
        volume=Decimal("1E+3"),
    )
    data = CODEC.encode(tick)
    assert b'"last_price":"1.10"' in data
    assert b'"volume":"1E+3"' in data
    decoded = CODEC.decode(data)
    assert str(decoded.last_price) == "1.10"
    assert str(decoded.volume) == "1E+3"


def test_non_utc_timestamps_come_back_as_the_same_instant_in_utc() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    tick = MarketTick(
        event_id="018f0000-0000-7000-8000-000000000002",
        ts=datetime(2024, 5, 1, 15, 0, 0, 123456, tzinfo=ist),
        instrument="INFY",
        last_price=Decimal("1500.05"),
    )
    data = CODEC.encode(tick)
    assert b'"ts":"2024-05-01T09:30:00.123456Z"' in data
    decoded = CODEC.decode(data)
    assert decoded.ts == datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=UTC)


def test_infinite_health_age_is_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        HealthReport(
            event_id="018f0000-0000-7000-8000-000000000003",
            ts=datetime(2024, 5, 1, tzinfo=UTC),
            stage="feed",
            severity=Severity.CRITICAL,
            message="no data yet",
            age_seconds=math.inf,
        )


def test_plugin_registers_the_codec_and_it_is_json() -> None:
    assert tradeloom_register_codecs() == {"decimal": DecimalJsonCodec}
    assert DecimalJsonCodec.content_type == "application/json"


def test_decode_accepts_bytearray_and_memoryview() -> None:
    tick = MarketTick(
        event_id="018f0000-0000-7000-8000-000000000004",
        ts=datetime(2024, 5, 1, tzinfo=UTC),
        instrument="ORCL",
        last_price=Decimal("2.50"),
    )
    data = CODEC.encode(tick)
    assert CODEC.decode(bytearray(data)) == tick
    assert CODEC.decode(memoryview(data)) == tick
