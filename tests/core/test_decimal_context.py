"""A strategy that changes the thread's Decimal context (its precision, say) would silently
round the books' cash, prices and commissions: the run stops with an error naming it."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import pytest

from tradeloom.errors import StrategyError
from tradeloom.events import Bar
from tradeloom.testing import bars, run_strategy
from tradeloom_strategies.sma_cross import SmaCross

CLOSES = [f"{100 + (i % 17) * 1.37 - (i % 5) * 0.91:.2f}" for i in range(3000)]


class LowPrecision(SmaCross):
    """sma_cross that sets the thread's Decimal precision to 6 digits in ``callback``, or
    only inside a local context of its own ("local")."""

    def __init__(self, callback: str) -> None:
        super().__init__(quantity=Decimal(3))
        self.callback = callback

    def _sums(self, where: str) -> None:
        if self.callback == "local":
            with decimal.localcontext() as mine:
                mine.prec = 6
                Decimal(1) / 3  # rounded to 6 digits: its own business
        elif self.callback == where:
            decimal.getcontext().prec = 6

    def on_start(self, ctx: Any) -> None:
        self._sums("on_start")
        super().on_start(ctx)

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        self._sums("on_bar")
        super().on_bar(bar, ctx)


@pytest.fixture(autouse=True)
def _context_kept() -> Any:
    before = decimal.getcontext().copy()
    yield
    decimal.setcontext(before)


@pytest.mark.parametrize(
    ("callback", "who"),
    [
        ("on_start", "strategy 'strategy' in on_start"),
        ("on_bar", "one of the strategies 'strategy' in on_tick or on_bar"),
    ],
)
def test_a_strategy_changing_the_decimal_context_stops_the_run(callback: str, who: str) -> None:
    with pytest.raises(StrategyError) as info:
        run_strategy(LowPrecision(callback), bars("X", CLOSES), commission_bps=7)
    message = str(info.value)
    assert message.startswith(f"{who} changed the thread's Decimal context (prec=6 ")
    assert "was prec=28 " in message and "decimal.localcontext()" in message
    assert decimal.getcontext().prec == 28  # put back for the rest of the run


def test_a_strategy_using_a_local_context_trades_as_it_would_otherwise() -> None:
    data = bars("X", CLOSES)
    plain = run_strategy(SmaCross(quantity=Decimal(3)), data, commission_bps=7)
    local = run_strategy(LowPrecision("local"), data, commission_bps=7)
    assert len(plain.fills) >= 4, "the data must make the strategy trade"
    assert [(f.price, f.commission) for f in local.fills] == [
        (f.price, f.commission) for f in plain.fills
    ]
    assert str(local.final_equity) == str(plain.final_equity)


class Innocent(SmaCross):
    """sma_cross with an on_fill of its own (called after another strategy's change)."""

    def on_fill(self, fill: Any, ctx: Any) -> None:
        pass


def test_a_change_in_on_bar_is_not_blamed_on_the_next_callback_of_another() -> None:
    with pytest.raises(StrategyError) as info:
        run_strategy(
            {"innocent": Innocent(quantity=Decimal(3)), "culprit": LowPrecision("on_bar")},
            bars("X", CLOSES[:300]),  # less than a block: found before a fill or on_stop
        )
    assert str(info.value).startswith(
        "one of the strategies 'innocent', 'culprit' in on_tick or on_bar changed the thread's "
        "Decimal context (prec=6 "
    )
