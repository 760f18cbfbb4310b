"""{{ cookiecutter.class_name }} against tradeloom's executor conformance suite, plus its own
tests."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from tradeloom import Bar, Strategy, StrategyContext
from tradeloom.testing import bars, run_strategy
from tradeloom.testing.executors import START, ExecutorConformance, ExecutorHarness, make_bar

from {{ cookiecutter.package_name }} import {{ cookiecutter.class_name }}


class Test{{ cookiecutter.class_name }}Conformance(ExecutorConformance):
    @pytest.fixture
    def executor(self) -> {{ cookiecutter.class_name }}:
        spread, commission = Decimal(10), Decimal("0.01")
        return {{ cookiecutter.class_name }}(spread_bps=spread, commission_per_unit=commission)


def test_buys_pay_half_the_spread_and_sells_receive_less() -> None:
    harness = ExecutorHarness({{ cookiecutter.class_name }}(spread_bps=Decimal(20)))
    harness.market(make_bar("ACME", "100", "100", START))
    buy = harness.order("ACME", "buy", "2")
    sell = harness.order("ACME", "sell", "1")
    harness.market(make_bar("ACME", "100", "101", START + timedelta(minutes=1)))
    assert harness.outcome(buy).price == Decimal("100.1")  # type: ignore[union-attr]
    assert harness.outcome(sell).price == Decimal("99.9")  # type: ignore[union-attr]


def test_commission_per_unit() -> None:
    harness = ExecutorHarness({{ cookiecutter.class_name }}(commission_per_unit=Decimal("0.05")))
    harness.market(make_bar("ACME", "10", "10", START))
    order = harness.order("ACME", "buy", "30")
    harness.market(make_bar("ACME", "10", "10", START + timedelta(minutes=1)))
    assert harness.outcome(order).commission == Decimal("1.50")  # type: ignore[union-attr]


def test_negative_spread_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        {{ cookiecutter.class_name }}(spread_bps=Decimal(-1))


class BuyOnce(Strategy):
    """Buys one unit on the first bar."""

    bought = False

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not self.bought:
            ctx.buy(bar.instrument, 1)
            self.bought = True


def test_in_a_backtest() -> None:
    # Picks the executor by name, as a tradeloom.toml does: this needs the plugin installed.
    result = run_strategy(
        BuyOnce(),
        bars("ACME", ["50", "51", "52"]),
        config={
            "executor": {
                "name": "{{ cookiecutter.component_name }}",
                "params": {"spread_bps": "10"},
            }
        },
    )
    # Filled at the next bar's open (50) plus half of 10 bps.
    assert [fill.price for fill in result.fills] == [Decimal("50.025")]
