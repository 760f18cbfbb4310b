"""The stock pre-trade validators against a small, real RiskView."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tradeloom.components import RiskView, Validator
from tradeloom.events import OrderType, Side, Signal
from tradeloom_validators import MaxOrderNotional, MaxPosition, NoShort, PriceBand
from tradeloom_validators.plugin import tradeloom_register_validators

D = Decimal


@dataclass
class Book:
    """A RiskView backed by plain dicts: positions already include open orders; open limit
    orders (by side) are given apart, as the runtime's view keeps them."""

    prices: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    cash_by_strategy: dict[str, Decimal] = field(default_factory=dict)
    open_limit_buys: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    open_limit_sells: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def last_price(self, instrument: str) -> Decimal | None:
        return self.prices.get(instrument)

    def position(self, strategy_id: str, instrument: str) -> Decimal:
        return self.positions.get((strategy_id, instrument), D(0))

    def position_range(self, strategy_id: str, instrument: str) -> tuple[Decimal, Decimal]:
        key = (strategy_id, instrument)
        expected = self.position(strategy_id, instrument)
        return (
            expected - self.open_limit_buys.get(key, D(0)),
            expected + self.open_limit_sells.get(key, D(0)),
        )

    def cash(self, strategy_id: str) -> Decimal:
        return self.cash_by_strategy.get(strategy_id, D(0))


def signal(
    side: str,
    quantity: str,
    instrument: str = "ORCL",
    limit_price: str | None = None,
    strategy_id: str = "sma",
) -> Signal:
    return Signal(
        event_id=uuid.uuid4(),
        ts=datetime(2024, 5, 1, tzinfo=UTC),
        strategy_id=strategy_id,
        instrument=instrument,
        side=Side(side),
        quantity=D(quantity),
        order_type=OrderType.LIMIT if limit_price is not None else OrderType.MARKET,
        limit_price=D(limit_price) if limit_price is not None else None,
    )


def test_the_test_book_is_a_risk_view() -> None:
    view: RiskView = Book()
    assert view.position("s", "X") == 0


def test_plugin_registers_all_four_validators() -> None:
    registered = tradeloom_register_validators()
    assert registered == {
        "max_position": MaxPosition,
        "max_order_notional": MaxOrderNotional,
        "price_band": PriceBand,
        "no_short": NoShort,
    }
    assert all(issubclass(factory, Validator) for factory in registered.values())


def test_which_validators_wait_for_a_price() -> None:
    assert MaxPosition(limit="1").needs_price is False
    assert NoShort().needs_price is False
    assert MaxOrderNotional(limit="1").needs_price is True
    assert PriceBand(max_deviation_bps="1").needs_price is True


# --- max_position ----------------------------------------------------------------------------


def test_max_position_passes_up_to_the_limit_inclusive() -> None:
    rule = MaxPosition(limit="100")
    book = Book(positions={("sma", "ORCL"): D(60)})
    assert rule.validate(signal("buy", "39"), book) is None
    assert rule.validate(signal("buy", "40"), book) is None  # exactly 100


def test_max_position_rejects_beyond_the_limit_naming_the_numbers() -> None:
    rule = MaxPosition(limit="100")
    book = Book(positions={("sma", "ORCL"): D(100)})
    reason = rule.validate(signal("buy", "50"), book)
    assert reason is not None
    assert reason.startswith("position after order 150 would exceed limit 100 for ORCL")
    assert "strategy sma" in reason
    assert "position 100 including open orders but not open limit sells" in reason
    assert "buy 50" in reason


def test_max_position_checks_short_side_by_absolute_value() -> None:
    rule = MaxPosition(limit="100")
    book = Book(positions={("sma", "ORCL"): D(-80)})
    assert rule.validate(signal("sell", "20"), book) is None  # exactly -100
    reason = rule.validate(signal("sell", "20.5"), book)
    assert reason is not None
    assert reason.startswith("position after order -100.5 would exceed limit 100 for ORCL")


def test_max_position_counts_per_strategy_and_instrument() -> None:
    rule = MaxPosition(limit="100")
    book = Book(positions={("other", "ORCL"): D(100), ("sma", "MSFT"): D(100)})
    assert rule.validate(signal("buy", "100"), book) is None
    assert rule.validate(signal("buy", "1", strategy_id="other"), book) is not None
    assert rule.validate(signal("buy", "1", instrument="MSFT"), book) is not None


def test_max_position_per_instrument_limits_override_the_default() -> None:
    rule = MaxPosition(limit="100", limits={"ORCL": "10", "MSFT": 500})
    book = Book()
    assert rule.validate(signal("buy", "10"), book) is None
    reason = rule.validate(signal("buy", "11"), book)
    assert reason is not None
    assert reason.startswith("position after order 11 would exceed limit 10 for ORCL")
    assert rule.validate(signal("buy", "500", instrument="MSFT"), book) is None
    assert rule.validate(signal("buy", "101", instrument="IBM"), book) is not None
    assert rule.limit_for("IBM") == D(100)


def test_max_position_lets_orders_that_only_reduce_exposure_through() -> None:
    rule = MaxPosition(limit="100")
    over_long = Book(positions={("sma", "ORCL"): D(150)})  # e.g. the limit was lowered
    assert rule.validate(signal("sell", "10"), over_long) is None
    assert rule.validate(signal("buy", "1"), over_long) is not None
    # Crossing zero to a short beyond the limit is new exposure, not a reduction.
    reason = rule.validate(signal("sell", "260"), over_long)
    assert reason is not None
    assert reason.startswith("position after order -110 would exceed limit 100")
    over_short = Book(positions={("sma", "ORCL"): D(-150)})
    assert rule.validate(signal("buy", "10"), over_short) is None


def test_max_position_keeps_decimal_exactness() -> None:
    rule = MaxPosition(limit="0.3")
    book = Book(positions={("sma", "BTC"): D("0.1")})
    assert rule.validate(signal("buy", "0.2", instrument="BTC"), book) is None  # 0.1 + 0.2 == 0.3


# --- max_order_notional ----------------------------------------------------------------------


def test_max_order_notional_uses_last_price_for_market_orders() -> None:
    rule = MaxOrderNotional(limit="10000")
    book = Book(prices={"ORCL": D("100")})
    assert rule.validate(signal("buy", "100"), book) is None  # exactly 10000
    reason = rule.validate(signal("sell", "101"), book)
    assert reason == (
        "order notional 10100 (101 x last price 100) would exceed limit 10000 for ORCL"
    )


def test_max_order_notional_uses_the_limit_price_for_limit_orders() -> None:
    rule = MaxOrderNotional(limit="10000")
    book = Book(prices={"ORCL": D("1")})  # last price would let it pass
    assert rule.validate(signal("buy", "80", limit_price="125"), book) is None  # 10000
    reason = rule.validate(signal("buy", "80", limit_price="125.01"), book)
    assert reason == (
        "order notional 10000.80 (80 x limit price 125.01) would exceed limit 10000 for ORCL"
    )


def test_max_order_notional_rejects_when_no_price_is_known() -> None:
    rule = MaxOrderNotional(limit="10000")
    assert rule.validate(signal("buy", "1"), Book()) == (
        "no price known for ORCL to value the order"
    )
    # A limit order carries its own price.
    assert rule.validate(signal("buy", "1", limit_price="5"), Book()) is None


# --- price_band ------------------------------------------------------------------------------


def test_price_band_lets_market_orders_through() -> None:
    rule = PriceBand(max_deviation_bps="50")
    assert rule.validate(signal("buy", "1"), Book(prices={"ORCL": D(100)})) is None
    assert rule.validate(signal("buy", "1"), Book()) is None


def test_price_band_boundary_is_inclusive_on_both_sides() -> None:
    rule = PriceBand(max_deviation_bps="50")  # 0.5 %
    book = Book(prices={"ORCL": D("100")})
    assert rule.validate(signal("buy", "1", limit_price="100.50"), book) is None
    assert rule.validate(signal("sell", "1", limit_price="99.50"), book) is None
    assert rule.validate(signal("buy", "1", limit_price="100"), book) is None


def test_price_band_rejects_outside_the_band_naming_the_numbers() -> None:
    rule = PriceBand(max_deviation_bps="50")
    book = Book(prices={"ORCL": D("100")})
    above = rule.validate(signal("buy", "1", limit_price="100.51"), book)
    assert above == (
        "limit price 100.51 is 51.00 bps from last price 100 for ORCL, more than the allowed 50 bps"
    )
    below = rule.validate(signal("sell", "1", limit_price="90"), book)
    assert below == (
        "limit price 90 is 1000.00 bps from last price 100 for ORCL, more than the allowed 50 bps"
    )


def test_price_band_compares_exactly_without_rounding() -> None:
    rule = PriceBand(max_deviation_bps="1")
    book = Book(prices={"ORCL": D("3")})
    # 1 bp of 3 is 0.0003: exactly at the edge passes, a hair beyond fails.
    assert rule.validate(signal("buy", "1", limit_price="3.0003"), book) is None
    assert rule.validate(signal("buy", "1", limit_price="3.00030001"), book) is not None


def test_price_band_rejects_a_limit_order_without_a_last_price() -> None:
    rule = PriceBand(max_deviation_bps="50")
    assert rule.validate(signal("buy", "1", limit_price="10"), Book()) == (
        "no last price for ORCL to compare the limit price 10 with"
    )


# --- no_short --------------------------------------------------------------------------------


def test_no_short_allows_selling_down_to_zero() -> None:
    rule = NoShort()
    book = Book(positions={("sma", "ORCL"): D("10")})
    assert rule.validate(signal("sell", "10"), book) is None
    assert rule.validate(signal("sell", "9.99"), book) is None


def test_no_short_rejects_a_sell_below_zero() -> None:
    rule = NoShort()
    book = Book(positions={("sma", "ORCL"): D("10")})
    reason = rule.validate(signal("sell", "15"), book)
    assert reason is not None
    assert reason.startswith("position after order -5 would go below zero for ORCL")
    assert "holds 10 including open orders but not open limit buys, sell 15" in reason
    assert rule.validate(signal("sell", "0.01"), Book()) is not None


def test_no_short_counts_open_sells_in_the_position() -> None:
    # 10 filled, 8 already being sold: only 2 left to sell.
    book = Book(positions={("sma", "ORCL"): D("2")})
    assert NoShort().validate(signal("sell", "2"), book) is None
    assert NoShort().validate(signal("sell", "3"), book) is not None


def test_no_short_does_not_count_on_open_limit_buys() -> None:
    # A resting buy at 1 may never fill: selling its quantity now could leave a short.
    book = Book(
        positions={("sma", "ORCL"): D("10")},  # 0 filled + a limit buy of 10
        open_limit_buys={("sma", "ORCL"): D("10")},
    )
    reason = NoShort().validate(signal("sell", "10"), book)
    assert reason is not None
    assert reason.startswith("position after order -10 would go below zero for ORCL")
    assert "holds 0 including open orders but not open limit buys" in reason


def test_max_position_judges_each_side_without_the_other_sides_limit_orders() -> None:
    rule = MaxPosition(limit="10")
    # 10 filled and a take-profit sell of 10 resting: a buy of 10 could make 20.
    long_with_take_profit = Book(
        positions={("sma", "ORCL"): D(0)}, open_limit_sells={("sma", "ORCL"): D(10)}
    )
    reason = rule.validate(signal("buy", "10"), long_with_take_profit)
    assert reason is not None
    assert reason.startswith("position after order 20 would exceed limit 10 for ORCL")
    assert "position 10 including open orders but not open limit sells, buy 10" in reason
    # The sell side is judged on the lowest: the resting sell counts there.
    assert rule.validate(signal("sell", "10"), long_with_take_profit) is None
    assert rule.validate(signal("sell", "10.01"), long_with_take_profit) is not None
    # A bracket from flat: a limit buy and a limit sell of the limit each pass.
    bracket = Book(
        positions={("sma", "ORCL"): D(0)},
        open_limit_buys={("sma", "ORCL"): D(10)},
        open_limit_sells={("sma", "ORCL"): D(10)},
    )
    assert rule.validate(signal("buy", "0.01"), bracket) is not None
    assert rule.validate(signal("sell", "0.01"), bracket) is not None


def test_a_view_without_position_range_is_judged_on_its_position() -> None:
    # A RiskView written before position_range (a test's, say) still works.
    class Plain:
        def position(self, strategy_id: str, instrument: str) -> Decimal:
            return D(10)

        def last_price(self, instrument: str) -> Decimal | None:
            return D(100)

        def cash(self, strategy_id: str) -> Decimal:
            return D(0)

    view: Any = Plain()
    assert NoShort().validate(signal("sell", "10"), view) is None
    assert NoShort().validate(signal("sell", "11"), view) is not None
    assert MaxPosition(limit="15").validate(signal("buy", "5"), view) is None
    assert MaxPosition(limit="15").validate(signal("buy", "6"), view) is not None


def test_no_short_never_blocks_buys() -> None:
    book = Book(positions={("sma", "ORCL"): D("-5")})  # short from before the rule existed
    assert NoShort().validate(signal("buy", "1"), book) is None


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["100", 100, D("100"), " 100 ", "1E+2"])
def test_limits_accept_decimal_int_and_numeric_strings(value: Any) -> None:
    assert MaxPosition(limit=value).limit == D(100)
    assert MaxOrderNotional(limit=value).limit == D(100)
    assert PriceBand(max_deviation_bps=value).max_deviation_bps == D(100)


@pytest.mark.parametrize(
    ("factory", "param", "label"),
    [
        (MaxPosition, "limit", "max_position: limit"),
        (MaxOrderNotional, "limit", "max_order_notional: limit"),
        (PriceBand, "max_deviation_bps", "price_band: max_deviation_bps"),
    ],
)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be greater than zero, got 0"),
        (0, "must be greater than zero, got 0"),
        ("-5", "must be greater than zero, got -5"),
        (D("-0.01"), "must be greater than zero, got -0.01"),
        ("NaN", "must be a finite number, got NaN"),
        ("Infinity", "must be a finite number, got Infinity"),
        ("1E+100000", "1E+100000 is out of range: a number must be below 1E+100000"),
        ("ten", "must be a number, got 'ten'"),
        (100.5, "must be a Decimal, an int or a numeric string, not the float 100.5"),
        (True, "must be a number, not the boolean True"),
        ([100], "must be a Decimal, an int or a numeric string, not list"),
    ],
)
def test_bad_limits_raise_value_error_naming_the_parameter(
    factory: Any, param: str, label: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        factory(**{param: value})
    assert str(info.value).startswith(f"{label} {message}")


def test_float_refusal_suggests_the_exact_spelling() -> None:
    with pytest.raises(ValueError, match=r'write it as a string, e.g. "0\.1"'):
        MaxPosition(limit=0.1)


def test_bad_per_instrument_limits_are_named() -> None:
    with pytest.raises(ValueError, match=r"max_position: limits\['ORCL'\] must be greater than"):
        MaxPosition(limit="100", limits={"ORCL": "0"})
    with pytest.raises(ValueError, match=r"max_position: limits\['ORCL'\] must be a Decimal"):
        MaxPosition(limit="100", limits={"ORCL": 2.5})
    with pytest.raises(ValueError, match="instrument names must be non-empty strings"):
        MaxPosition(limit="100", limits={"": "5"})
    with pytest.raises(ValueError, match="must be a table of instrument = limit, not list"):
        MaxPosition(limit="100", limits=["ORCL"])  # type: ignore[arg-type]


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(TypeError):
        NoShort(limit="1")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        MaxPosition(max="1")  # type: ignore[call-arg]
