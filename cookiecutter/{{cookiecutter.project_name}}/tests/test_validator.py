"""Tests of {{ cookiecutter.class_name }}: its rule on its own, then in a real backtest."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from tradeloom import Bar, Signal, Strategy, StrategyContext
from tradeloom.testing import bars, run_strategy
from uuid6 import uuid7

from {{ cookiecutter.package_name }} import {{ cookiecutter.class_name }}


class View:
    """What the runtime gives a validator (tradeloom.components.RiskView), held still."""

    def __init__(self, cash: str, price: str | None) -> None:
        self._cash = Decimal(cash)
        self._price = None if price is None else Decimal(price)

    def last_price(self, instrument: str) -> Decimal | None:
        return self._price

    def position(self, strategy_id: str, instrument: str) -> Decimal:
        return Decimal(0)

    def position_range(self, strategy_id: str, instrument: str) -> tuple[Decimal, Decimal]:
        return Decimal(0), Decimal(0)

    def cash(self, strategy_id: str) -> Decimal:
        return self._cash


def signal(side: str, quantity: str, limit_price: str | None = None) -> Signal:
    return Signal(
        event_id=uuid7(),
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        strategy_id="s",
        instrument="ACME",
        side=side,
        quantity=Decimal(quantity),
        order_type="limit" if limit_price else "market",
        limit_price=None if limit_price is None else Decimal(limit_price),
    )


def test_a_buy_within_the_share_of_cash_passes() -> None:
    validator = {{ cookiecutter.class_name }}(share=Decimal("0.5"))
    assert validator.validate(signal("buy", "5"), View(cash="1000", price="100")) is None


def test_a_buy_over_the_share_of_cash_is_refused_with_its_cost() -> None:
    validator = {{ cookiecutter.class_name }}(share=Decimal("0.5"))
    reason = validator.validate(signal("buy", "6"), View(cash="1000", price="100"))
    assert reason == "a buy of 600 is more than 0.5 of the cash (500.0)"


def test_a_limit_buy_is_valued_at_its_limit() -> None:
    validator = {{ cookiecutter.class_name }}(share=Decimal("0.5"))
    assert validator.validate(signal("buy", "6", "80"), View(cash="1000", price="100")) is None


def test_sells_always_pass() -> None:
    validator = {{ cookiecutter.class_name }}(share=Decimal("0.01"))
    assert validator.validate(signal("sell", "100"), View(cash="10", price="100")) is None


@pytest.mark.parametrize("share", ["0", "-0.1", "1.5"])
def test_a_share_out_of_range_is_refused(share: str) -> None:
    with pytest.raises(ValueError, match="share must be"):
        {{ cookiecutter.class_name }}(share=Decimal(share))


class BuysTwice(Strategy):
    """Buys 10 on the first bar and 1000 on the second."""

    def __init__(self) -> None:
        self.bars_seen = 0

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.bars_seen += 1
        if self.bars_seen <= 2:
            ctx.buy(bar.instrument, 10 if self.bars_seen == 1 else 1000)


def test_in_a_backtest() -> None:
    # Picks the validator by name, as a tradeloom.toml does: this needs the plugin installed.
    result = run_strategy(
        BuysTwice(),
        bars("ACME", ["10", "10", "10", "10"]),
        starting_cash=1000,
        validators=[{"name": "{{ cookiecutter.component_name }}", "params": {"share": "0.5"}}],
    )
    assert [fill.quantity for fill in result.fills] == [Decimal(10)]
    (rejection,) = result.rejections
    assert rejection.validator == "{{ cookiecutter.component_name }}"
    assert rejection.reason.startswith("a buy of 10000 is more than 0.5 of the cash")
