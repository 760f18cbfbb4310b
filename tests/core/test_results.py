from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uuid6

import tradeloom
from tradeloom.events import Fill, Side
from tradeloom.runtime.pipeline import DEAD_LETTERS_LOGGED
from tradeloom.runtime.results import MAX_DEAD_LETTERS_KEPT, RunResult
from tradeloom.testing.persistence import make_snapshot


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


def tick_file_config(data: Path) -> dict[str, Any]:
    """Replay ``data`` (``ts,price`` rows of instrument X)."""
    params = {
        "path": str(data),
        "format": "custom",
        "instrument": "X",
        "columns": {"ts": "ts", "last_price": "price"},
    }
    return {"feed": {"name": "replay", "params": params}}


def test_bad_input_is_counted_beyond_the_dead_letters_kept(tmp_path: Path) -> None:
    kept = MAX_DEAD_LETTERS_KEPT
    lines = ["ts,price"]
    for second in range(kept + 30):
        hours, rest = divmod(second, 3600)
        stamp = f"2024-01-02T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"
        lines.append(f"{stamp},{'oops' if second % 500 else '100.25'}")
    data = tmp_path / "ticks.csv"
    data.write_text("\n".join(lines) + "\n")
    bad = sum(1 for second in range(kept + 30) if second % 500)
    assert bad > kept
    config = tick_file_config(data)
    result = tradeloom.backtest(config, strategies={"idle": tradeloom.Strategy()})
    assert result.dead_letter_count == bad
    assert len(result.dead_letters) == kept
    assert result.summary()["dead_letters"] == bad
    assert f"bad input       {bad:,}" in result.format_summary()
    assert f"dead_letters={bad}" in repr(result)


def test_the_summary_rounds_returns_of_any_size_and_never_shows_a_negative_zero() -> None:
    result = RunResult(starting_equity=Decimal("1e-25"))
    # A return of about 2e31 (1e-25 of starting cash, then some trading) used to fail in
    # quantize: its digits exceed the context's 28.
    result.snapshots = {"a": make_snapshot("a", cash="2000000", equity="2000000")}
    summary = result.summary()
    assert summary["total_return"] == "20000000000000000000000000000000.000000"
    assert "  total return    2,000,000,000,000,000,000,000,000,000,000,000.00%" in (
        result.format_summary()
    )
    # A tiny loss rounds to 0.00%, not -0.00%.
    result.snapshots = {"a": make_snapshot("a", cash="99.9999", equity="99.9999")}
    result.starting_equity = Decimal(100)
    assert "  total return    0.00%" in result.format_summary()
    assert result.summary()["total_return"] == "-0.000001"


def test_a_role_process_summary_shows_only_what_it_did() -> None:
    result = RunResult(starting_equity=Decimal(100), market_events=0)
    everything = result.format_summary()
    assert "market events" in everything and "final equity" in everything
    strategy = result.format_summary(["strategy", "risk"])
    assert strategy.splitlines() == ["  roles           risk, strategy", "  bad input       0"]
    portfolio = result.format_summary(["portfolio"])
    assert "market events" not in portfolio and "final equity    100.00" in portfolio
    feed = result.format_summary(["feed"])
    assert "market events   0" in feed and "equity" not in feed


def png_text(path: Path) -> dict[str, str]:
    """The PNG's tEXt chunks (keyword and text, Latin-1)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"tEXt":
            keyword, _, text = body.partition(b"\0")
            chunks[keyword.decode("latin-1")] = text.decode("latin-1")
        offset += 12 + length
    return chunks


def test_the_equity_picture_of_an_interrupted_run_says_so(tmp_path: Path) -> None:
    result = RunResult(starting_equity=Decimal(1000))
    result.snapshots = {"s": make_snapshot("s", cash=1010)}
    result.equity_curve.add(datetime(2024, 1, 2, tzinfo=UTC), Decimal(1000))
    result.equity_curve.add(datetime(2024, 1, 3, tzinfo=UTC), Decimal(1010))
    result.add_fill(fill(Side.BUY), Decimal(0), Decimal(1))
    complete = png_text(result.write(tmp_path / "complete")["equity_curve"])["Title"]
    assert complete == "Equity: 1,000.00 -> 1,010.00 (1 fills, max drawdown 0.00%)"
    result.interrupted = "at market time 2024-01-03T00:00:00+00:00 (1 fills so far)"
    stopped = png_text(result.write(tmp_path / "stopped")["equity_curve"])["Title"]
    assert stopped == f"{complete}\ninterrupted {result.interrupted}"


def test_only_the_first_bad_inputs_of_a_run_are_logged_as_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ["ts,price"] + [f"2024-01-02T00:00:{second:02d}Z,oops" for second in range(40)]
    data = tmp_path / "ticks.csv"
    data.write_text("\n".join(lines) + "\n")
    config = tick_file_config(data)
    with caplog.at_level(logging.DEBUG, logger="tradeloom"):
        result = tradeloom.backtest(config, strategies={"idle": tradeloom.Strategy()})
    assert result.dead_letter_count == 40 == len(result.dead_letters)
    # A live run logs each (they come as they come, maybe days apart).
    with caplog.at_level(logging.DEBUG, logger="tradeloom"):
        caplog.clear()
        live = tradeloom.run({**config, "strategies": [{"name": "sma_cross"}]})
    assert live.dead_letter_count == 40
    live_warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(m.startswith("bad input from") for m in live_warned) == 40
    assert not any("not logged one by one" in m for m in live_warned)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tradeloom"):
        result = tradeloom.backtest(config, strategies={"idle": tradeloom.Strategy()})
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    bad_input = [m for m in warned if m.startswith("bad input from")]
    assert len(bad_input) == DEAD_LETTERS_LOGGED
    assert bad_input[0] == f"bad input from {data} line 2: column 'price': 'oops' is not a number"
    assert sum("not logged one by one" in m for m in warned) == 1
    assert f"replay: {data}: skipped 40 bad row(s); each was reported as bad input" in warned
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum(m.startswith("bad input from") for m in debug) == 40 - DEAD_LETTERS_LOGGED
