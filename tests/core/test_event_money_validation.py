"""The money and time validators of the event models: every kind of input, exact messages.

The validators were merged for speed (one Python call per field); these pin that every money
type still refuses floats, non-finite values (also as ``Decimal`` instances and in JSON) and
values out of range, with the same messages, and that timestamps end up in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import uuid6
from pydantic import ValidationError

from tradeloom.events import Fill, MarketTick, PortfolioSnapshot, Position, Side
from tradeloom.testing.persistence import make_fill

TS = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)


def _tick(**overrides: Any) -> MarketTick:
    fields: dict[str, Any] = {
        "event_id": uuid6.uuid7(),
        "ts": TS,
        "instrument": "ORCL",
        "last_price": "101.25",
    }
    fields.update(overrides)
    return MarketTick(**fields)


def _message(caught: pytest.ExceptionInfo[ValidationError]) -> str:
    errors = caught.value.errors()
    assert len(errors) == 1
    return str(errors[0]["msg"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            1.5,
            "Value error, float 1.5 is not accepted for money, prices or quantities; "
            "pass a Decimal, an int or a numeric string",
        ),
        # pydantic's own message for these would list float among what a Decimal takes.
        (
            True,
            "Value error, the boolean True is not accepted for money, prices or quantities; "
            "pass a Decimal, an int or a numeric string",
        ),
        (
            [1],
            "Value error, list is not accepted for money, prices or quantities; "
            "pass a Decimal, an int or a numeric string",
        ),
        (Decimal("NaN"), "Input should be a finite number"),
        (Decimal("-Infinity"), "Input should be a finite number"),
        ("sNaN", "Input should be a finite number"),
        ("inf", "Input should be a finite number"),
        (Decimal("0"), "Value error, must be greater than zero, got 0"),
        (-2, "Value error, must be greater than zero, got -2"),
        ("-0.01", "Value error, must be greater than zero, got -0.01"),
    ],
)
def test_prices_refuse_with_exact_messages(value: object, message: str) -> None:
    for field in ("last_price", "bid", "last_quantity"):
        with pytest.raises(ValidationError) as caught:
            _tick(**{field: value})
        assert _message(caught) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            0.0,
            "Value error, float 0.0 is not accepted for money, prices or quantities; "
            "pass a Decimal, an int or a numeric string",
        ),
        (Decimal("NaN"), "Input should be a finite number"),
        ("-1", "Value error, must not be negative, got -1"),
    ],
)
def test_non_negative_amounts_refuse_with_exact_messages(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _tick(volume=value)
    assert _message(caught) == message


def test_non_negative_and_signed_amounts_accept_zero_and_negatives() -> None:
    assert _tick(volume=0).volume == Decimal(0)
    position = Position(quantity="-3", average_price="0", realized_pnl=Decimal("-1.5"))
    assert (position.quantity, position.realized_pnl) == (Decimal(-3), Decimal("-1.5"))
    for bad, message in [
        (
            2.5,
            "Value error, float 2.5 is not accepted for money, prices or quantities; "
            "pass a Decimal, an int or a numeric string",
        ),
        (Decimal("Infinity"), "Input should be a finite number"),
        ("NaN", "Input should be a finite number"),
    ]:
        with pytest.raises(ValidationError) as caught:
            Position(quantity=bad, average_price="1")
        assert _message(caught) == message


OUT_OF_RANGE = (
    "Value error, {} is out of range: a number must be below 1E+100000 and, unless zero, "
    "at least 1E-100000 in magnitude"
)


@pytest.mark.parametrize("value", ["1E+100000", "1e999999", "1E-100001", "0.5E-100000"])
def test_prices_quantities_and_volumes_beyond_the_range_are_refused(value: str) -> None:
    # 1e999999 is a finite Decimal, but ten of them overflow the default context: the books
    # would fail on it far from the input that carried it.
    message = OUT_OF_RANGE.format(Decimal(value))
    for field in ("last_price", "last_quantity", "volume"):
        with pytest.raises(ValidationError) as caught:
            _tick(**{field: value})
        assert _message(caught) == message
    with pytest.raises(ValidationError) as caught:
        MarketTick.model_validate_json(_tick().model_dump_json().replace('"101.25"', f'"{value}"'))
    assert _message(caught) == message


def test_what_the_books_compute_is_not_held_to_the_range() -> None:
    # Products of two numbers in range (a position of 1E+60000 at 1E+60000, its fee of
    # 1E-120003) are out of it: a fill, a position or a snapshot holding them is valid.
    huge, tiny = "1E+120000", "1E-120003"
    assert Position(quantity=f"-{huge}", average_price=huge, last_price=tiny).quantity < 0
    fill = make_fill(quantity=huge, price=huge, commission=tiny)
    assert Fill.model_validate_json(fill.model_dump_json()) == fill
    snapshot = PortfolioSnapshot(
        event_id=uuid6.uuid7(),
        ts=TS,
        portfolio_id="p",
        cash=f"-{huge}",
        equity=tiny,
        commission_paid=tiny,
    )
    assert PortfolioSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot


def test_the_edges_of_the_range_and_zeros_of_any_exponent_are_accepted() -> None:
    for value in ("9.999E+99999", "1E-100000"):
        assert _tick(last_price=value, volume=value).last_price == Decimal(value)
    for zero in ("0E+999999999", "0E-999999999"):
        assert _tick(volume=zero).volume == 0


def test_json_numbers_and_non_finite_strings_are_refused() -> None:
    tick = _tick()
    good = tick.model_dump_json()
    assert MarketTick.model_validate_json(good) == tick
    with pytest.raises(ValidationError) as caught:
        MarketTick.model_validate_json(good.replace('"101.25"', "101.25"))
    assert "float 101.25 is not accepted" in _message(caught)
    snapshot = PortfolioSnapshot(
        event_id=uuid6.uuid7(), ts=TS, portfolio_id="p", cash="10", equity="10"
    )
    with pytest.raises(ValidationError) as caught:
        PortfolioSnapshot.model_validate_json(
            snapshot.model_dump_json().replace('"equity":"10"', '"equity":"NaN"')
        )
    assert _message(caught) == "Input should be a finite number"


def test_timestamps_keep_utc_as_is_and_convert_other_zones() -> None:
    same = _tick(ts=TS)
    assert same.ts is TS
    east = datetime(2024, 1, 2, 17, 30, tzinfo=timezone(timedelta(hours=2)))
    converted = _tick(ts=east)
    assert converted.ts == TS and converted.ts.tzinfo is UTC
    parsed = MarketTick.model_validate_json(same.model_dump_json())
    assert parsed.ts == TS and parsed.ts.tzinfo is UTC
    fill = Fill.model_validate_json(
        Fill(
            event_id=uuid6.uuid7(),
            ts=TS,
            order_id=uuid6.uuid7(),
            signal_id=uuid6.uuid7(),
            strategy_id="s",
            instrument="ORCL",
            side=Side.BUY,
            quantity="1",
            price="101.25",
        )
        .model_dump_json()
        .replace("Z", "+01:00")
    )
    assert fill.ts == TS - timedelta(hours=1) and fill.ts.tzinfo is UTC
    with pytest.raises(ValidationError) as caught:
        _tick(ts=datetime(2024, 1, 2, 15, 30))
    assert _message(caught) == "Value error, timestamp must be timezone-aware (UTC)"


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))),
    ],
)
def test_a_timestamp_with_no_utc_equivalent_is_a_validation_error(moment: datetime) -> None:
    # astimezone() raises OverflowError, which pydantic does not turn into a validation
    # error: it escaped the codec, and one such record on a topic stopped every consumer.
    with pytest.raises(ValidationError) as caught:
        _tick(ts=moment)
    assert _message(caught) == f"Value error, timestamp {moment.isoformat()} is out of range in UTC"
    with pytest.raises(ValidationError):
        MarketTick.model_validate_json(
            _tick().model_dump_json().replace('"2024-01-02T15:30:00Z"', f'"{moment.isoformat()}"')
        )


@pytest.mark.parametrize("size", ["1E+60000", "1E-60000"])
def test_a_backtest_of_extreme_numbers_in_range_completes(size: str) -> None:
    # Buying 1E+60000 at 1E+60000 with 10 bps: cash, fee and equity leave the inputs' range,
    # and the run (its snapshots) must still complete.
    from tradeloom import Strategy
    from tradeloom.testing import bars, run_strategy

    class BuysOnce(Strategy):
        def on_bar(self, bar: Any, ctx: Any) -> None:
            if not ctx.position("X"):
                ctx.buy("X", Decimal(size))

    result = run_strategy(
        BuysOnce(), bars("X", [size, size, size]), commission_bps=10, starting_cash=size
    )
    (fill,) = result.fills
    assert fill.commission == Decimal(size) * Decimal(size) * Decimal("0.001")
    assert result.final_equity == Decimal(size) - fill.commission


@pytest.mark.parametrize(
    ("quantity", "what"), [(True, "the boolean True"), (None, "None"), (2.5, "float 2.5")]
)
def test_a_strategy_buying_what_is_no_amount_is_told_what_an_amount_is(
    quantity: object, what: str
) -> None:
    from tradeloom import Strategy
    from tradeloom.errors import StrategyError
    from tradeloom.testing import run_strategy, ticks

    class BuysOddly(Strategy):
        def on_tick(self, tick: MarketTick, ctx: Any) -> None:
            ctx.buy(tick.instrument, quantity)

    with pytest.raises(StrategyError) as caught:
        run_strategy(BuysOddly(), ticks("X", ["10"]))
    assert str(caught.value).endswith(
        f"ValueError: buy 'X': quantity: {what} is not accepted for money, prices or "
        "quantities; pass a Decimal, an int or a numeric string"
    )
