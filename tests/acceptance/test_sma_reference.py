"""SMA(10/30) crossover on real ORCL daily bars, checked against an independent reference
simulation written here with nothing from the framework (only csv and decimal)."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import tradeloom

FAST, SLOW, QUANTITY = 10, 30, Decimal(10)
COMMISSION = Decimal(10) / Decimal(10_000)
CASH = Decimal(100_000)


def reference(path: Path) -> tuple[list[tuple[str, Decimal, Decimal, Decimal]], Decimal]:
    """Fills as (side, quantity, price, commission) and final equity, computed directly."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    closes: list[Decimal] = []
    cash, position = CASH, Decimal(0)
    fills = []
    pending: tuple[str, Decimal] | None = None
    last_sign = 0
    for row in rows:
        if pending is not None:  # a market order fills at this bar's open
            side, quantity = pending
            price = Decimal(row["Open"])
            commission = quantity * price * COMMISSION
            signed = quantity if side == "buy" else -quantity
            cash -= signed * price + commission
            position += signed
            fills.append((side, quantity, price, commission))
            pending = None
        closes.append(Decimal(row["Close"]))
        if len(closes) < SLOW:
            continue
        fast = sum(closes[-FAST:]) / FAST
        slow = sum(closes[-SLOW:]) / SLOW
        sign = (fast > slow) - (fast < slow)
        if sign == 0:
            continue
        if last_sign and sign != last_sign:
            if sign > 0 and position == 0:
                pending = ("buy", QUANTITY)
            elif sign < 0 and position > 0:
                pending = ("sell", position)
        last_sign = sign
    return fills, cash + position * closes[-1]


def test_sma_crossover_matches_reference_simulation(shared_data: Path, tmp_path: Path) -> None:
    data = shared_data / "orcl-1995-2014.txt"
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
params = {{ path = "{data}", format = "yahoo", instrument = "ORCL" }}

[[strategies]]
name = "sma_cross"
params = {{ fast = 10, slow = 30, quantity = 10 }}

[executor]
name = "paper"
params = {{ fill_at = "next", commission_bps = 10 }}

[persistence]
name = "sqlite"
params = {{ path = "{tmp_path / "state.sqlite"}" }}

[portfolio]
starting_cash = 100000
"""
    )
    result = tradeloom.backtest(config)

    expected_fills, expected_equity = reference(data)
    actual = [(f.side.value, f.quantity, f.price, f.commission) for f in result.fills]
    assert len(expected_fills) > 100  # the data really trades
    assert actual == expected_fills
    assert result.final_equity == expected_equity
    assert result.market_events == 5036
    assert not result.rejections
    assert all(f.instrument == "ORCL" and f.strategy_id == "sma_cross" for f in result.fills)
