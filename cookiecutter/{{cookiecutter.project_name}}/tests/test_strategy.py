"""Tests of {{ cookiecutter.class_name }}, run through a real backtest with tradeloom.testing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tradeloom.testing import bars, merge, run_strategy

from {{ cookiecutter.package_name }} import {{ cookiecutter.class_name }}


def test_buys_the_breakout_and_sells_the_breakdown() -> None:
    closes = ["10", "10.5", "10", "11", "12", "11.5", "9", "9.5"]
    strategy = {{ cookiecutter.class_name }}(lookback=3, quantity=Decimal(5))
    result = run_strategy(strategy, bars("ACME", closes))
    assert [fill.side for fill in result.fills] == ["buy", "sell"]
    # fill_at="next": each order fills at the next bar's open (the previous close here).
    assert [fill.price for fill in result.fills] == [Decimal("11"), Decimal("9")]
    assert result.snapshots["strategy"].positions["ACME"].quantity == 0


def test_no_trade_without_a_breakout() -> None:
    result = run_strategy({{ cookiecutter.class_name }}(lookback=3), bars("ACME", ["10"] * 10))
    assert result.fills == []


def test_instruments_are_traded_independently() -> None:
    up = bars("UP", ["1", "1", "1", "2", "3"])
    flat = bars("FLAT", ["5", "5", "5", "5", "5"])
    result = run_strategy({{ cookiecutter.class_name }}(lookback=3), merge(up, flat))
    assert {fill.instrument for fill in result.fills} == {"UP"}


@pytest.mark.parametrize("params", [{"lookback": 0}, {"quantity": Decimal(0)}])
def test_bad_parameters_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        {{ cookiecutter.class_name }}(**params)  # type: ignore[arg-type]
