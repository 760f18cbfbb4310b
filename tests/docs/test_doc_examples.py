"""The examples in the plugin-writing guides work: each is taken from its page and run against
tradeloom's conformance suites or a real backtest."""

from __future__ import annotations

import ast
import re
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradeloom.testing import bars, run_strategy
from tradeloom.testing.executors import ExecutorConformance
from tradeloom.testing.feeds import FeedConformance, collect_events
from tradeloom.testing.persistence import PersistenceConformance

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks(page: str) -> list[str]:
    return FENCE.findall((DOCS / page).read_text(encoding="utf-8"))


def example(page: str, defines: str) -> types.ModuleType:
    """Run the first python block of ``page`` that defines ``defines``; return its namespace."""
    for block in python_blocks(page):
        if re.search(rf"^class {defines}\b", block, re.M):
            module = types.ModuleType(f"docs_example_{defines.lower()}")
            exec(compile(block, f"{page}:{defines}", "exec"), module.__dict__)
            return module
    raise AssertionError(f"{page} has no python example defining {defines}")


GUIDES = sorted(p.name for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("page", GUIDES)
def test_python_examples_parse(page: str) -> None:
    for index, block in enumerate(python_blocks(page)):
        try:
            ast.parse(block)
        except SyntaxError as exc:
            pytest.fail(f"{page}, python block {index + 1}: {exc}")


# ---- writing-strategy.md --------------------------------------------------------------------

strategy_example = example("writing-strategy.md", "Breakout")


def test_strategy_example_trades_as_its_test_says() -> None:
    closes = ["10", "10.5", "10", "11", "12", "11.5", "9", "9.5"]
    strategy = strategy_example.Breakout(lookback=3, quantity=Decimal(5))
    result = run_strategy(strategy, bars("ACME", closes))
    assert [fill.side for fill in result.fills] == ["buy", "sell"]
    assert [fill.price for fill in result.fills] == [Decimal("11"), Decimal("9")]
    assert strategy_example.tradeloom_register_strategies() == {
        "breakout": strategy_example.Breakout
    }


# ---- writing-feed.md ------------------------------------------------------------------------

feed_example = example("writing-feed.md", "JsonLinesFeed")
LINES = [
    '{"ts": "2024-03-04T14:30:00Z", "instrument": "ACME", "price": "250.00"}',
    '{"ts": "2024-03-04T14:30:01Z", "instrument": "ACME", "price": "250.05"}',
]


class TestFeedExample(FeedConformance):
    expected_events = 2

    @pytest.fixture
    def feed(self, tmp_path: Path) -> Any:
        path = tmp_path / "ticks.jsonl"
        path.write_text("\n".join(LINES) + "\n")
        return feed_example.JsonLinesFeed(str(path))

    @pytest.fixture
    def bad_input_feed(self, tmp_path: Path) -> Any:
        path = tmp_path / "bad.jsonl"
        path.write_text("\n".join([LINES[0], "not json", LINES[1]]) + "\n")
        return feed_example.JsonLinesFeed(str(path))


def test_feed_example_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(LINES[0] + '\n{"ts": "2024-03-04T14:30:01Z"}\n')
    run = collect_events(feed_example.JsonLinesFeed(str(path)))
    assert [letter.location for letter in run.dead_letters] == ["line 2"]
    assert str(run.events[0].last_price) == "250.00"


def test_feed_example_reads_json_numbers_exactly(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"ts": "2024-03-04T14:30:00Z", "instrument": "ACME", "price": 250.1}\n')
    run = collect_events(feed_example.JsonLinesFeed(str(path)))
    assert run.dead_letters == []
    assert [str(event.last_price) for event in run.events] == ["250.1"]


# ---- writing-executor.md --------------------------------------------------------------------

executor_example = example("writing-executor.md", "NextPriceExecutor")


class TestExecutorExample(ExecutorConformance):
    @pytest.fixture
    def executor(self) -> Any:
        return executor_example.NextPriceExecutor(commission_per_unit=Decimal("0.01"))


# ---- writing-persistence.md -----------------------------------------------------------------

persistence_example = example("writing-persistence.md", "JsonFilePersistence")


class TestPersistenceExample(PersistenceConformance):
    @pytest.fixture
    def persistence(self, tmp_path: Path) -> Any:
        return persistence_example.JsonFilePersistence(str(tmp_path / "state.json"))

    def reopen(self, persistence: Any) -> Any:
        return persistence_example.JsonFilePersistence(str(persistence.path))

    def corrupt_a_snapshot(self, persistence: Any, portfolio_id: str) -> str:
        import json

        data = json.loads(persistence.path.read_text())
        data["snapshots"][portfolio_id] = '{"cash": "lots"}'
        persistence.path.write_text(json.dumps(data))
        return "snapshot is invalid"

    def corrupt_a_fill(self, persistence: Any, portfolio_id: str) -> str:
        import json

        data = json.loads(persistence.path.read_text())
        for entry in data["fills"]:
            if entry[0] == portfolio_id:
                entry[1] = entry[1].replace('"side":"buy"', '"side":"hold"')
        persistence.path.write_text(json.dumps(data))
        return "stored fill is invalid: side:"


# ---- writing-validator.md -------------------------------------------------------------------

validator_example = example("writing-validator.md", "MaxCashShare")


def test_validator_pages_test_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    package = types.ModuleType("my_validators")
    package.plugin = validator_example  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_validators", package)
    monkeypatch.setitem(sys.modules, "my_validators.plugin", validator_example)
    (block,) = [
        b for b in python_blocks("writing-validator.md") if "def test_large_buys_are_refused" in b
    ]
    namespace: dict[str, Any] = {}
    exec(compile(block, "writing-validator.md:testing", "exec"), namespace)
    namespace["test_large_buys_are_refused"]()


def test_validator_example_refuses_large_buys() -> None:
    from tradeloom import Strategy

    class BuyEveryBar(Strategy):
        def __init__(self, quantity: int) -> None:
            self.quantity = quantity

        def on_bar(self, bar: Any, ctx: Any) -> None:
            ctx.buy(bar.instrument, self.quantity)

    result = run_strategy(
        BuyEveryBar(quantity=500),
        bars("ACME", ["100", "101", "102"]),
        starting_cash=100_000,
        validators=[{"name": "max_cash_share", "params": {"share": "0.1"}}],
        plugins=[validator_example],
    )
    assert result.fills == []
    assert {r.validator for r in result.rejections} == {"max_cash_share"}
    assert "exceeds" in result.rejections[0].reason

    small = run_strategy(
        BuyEveryBar(quantity=10),
        bars("ACME", ["100", "101"]),
        validators=[{"name": "max_cash_share", "params": {"share": "0.1"}}],
        plugins=[validator_example],
    )
    assert len(small.fills) == 1  # the second bar's buy has no later price; rejected at drain
    with pytest.raises(ValueError, match="share must be in"):
        validator_example.MaxCashShare(share=Decimal(2))


# ---- python-api.md --------------------------------------------------------------------------


def test_python_api_example_matches_a_plain_python_replay_of_its_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import tradeloom.demo

    data = Path(tradeloom.demo.__file__).with_name("orcl-1995-2014.csv")
    (tmp_path / "tradeloom-demo").mkdir()
    shutil.copy(data, tmp_path / "tradeloom-demo" / data.name)
    monkeypatch.chdir(tmp_path)
    (block,) = [b for b in python_blocks("python-api.md") if "class Momentum" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "python-api.md", "exec"), namespace)
    result = namespace["result"]
    assert "final equity" in capsys.readouterr().out

    # The same rules by hand: decide on a bar's close, fill at the next bar's open, 5 bps.
    rows = [line.split(",") for line in data.read_text().splitlines()[1:]]
    opens = [Decimal(row[1]) for row in rows]
    closes = [Decimal(row[4]) for row in rows]
    cash, held, pending, fills = Decimal(100_000), Decimal(0), None, 0
    for index, close in enumerate(closes):
        if pending is not None:
            price = opens[index]
            cash -= pending * price + abs(pending) * price * Decimal("0.0005")
            held += pending
            pending, fills = None, fills + 1
        if index >= 20:
            rising = close > closes[index - 20]
            if rising and held == 0:
                pending = Decimal(10)
            elif not rising and held > 0:
                pending = -held
    # An order sent on the last bar has no next open: the paper trader rejects it.
    assert result.trade_count == fills > 100
    assert result.final_equity == cash + held * closes[-1]
    assert result.equity_curve.series()[-1][1] == result.final_equity
