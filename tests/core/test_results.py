from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import uuid6

from tradeloom.events import Fill, Side
from tradeloom.runtime.results import RunResult


def fill(side: Side) -> Fill:
    return Fill(
        event_id=uuid6.uuid7(),
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        order_id=uuid6.uuid7(),
        signal_id=uuid6.uuid7(),
        strategy_id="s",
        instrument="X",
        side=side,
        quantity=Decimal(1),
        price=Decimal(10),
        commission=Decimal("0.01"),
    )


def test_a_live_result_keeps_bounded_lists_but_complete_counts() -> None:
    result = RunResult(keep_events=4)
    position = Decimal(0)
    for index in range(100):
        side = Side.BUY if index % 2 == 0 else Side.SELL
        after = position + (1 if side is Side.BUY else -1)
        result.add_fill(fill(side), position, after)
        position = after
    assert result.trade_count == 100 and result.round_trips == 50
    assert result.commission == Decimal("1.00")
    assert 1 <= len(result.fills) <= 4
    assert result.summary()["trade_count"] == 100


def test_a_backtest_result_keeps_every_fill() -> None:
    result = RunResult()
    for _ in range(50):
        result.add_fill(fill(Side.BUY), Decimal(0), Decimal(1))
    assert len(result.fills) == 50 and result.round_trips == 0
