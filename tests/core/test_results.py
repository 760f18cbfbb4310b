from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import uuid6

import tradeloom
from tradeloom.events import Fill, MarketTick, Side
from tradeloom.runtime.pipeline import DEAD_LETTERS_LOGGED
from tradeloom.runtime.results import MAX_DEAD_LETTERS_KEPT, RunResult, equity_title
from tradeloom.testing import bars, run_strategy, ticks
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


@pytest.mark.parametrize(
    ("start", "final", "expected"),
    [
        ("-100", "0", "1"),  # restored books below zero, then a gain of 100: +100%
        ("-100", "-150", "-0.5"),  # and a further loss of 50: -50%
        ("100", "150", "0.5"),
        ("100", "-50", "-1.5"),
        ("0", "10", "0"),
    ],
)
def test_the_return_has_the_sign_of_the_change_whatever_the_start(
    start: str, final: str, expected: str
) -> None:
    # A resumed run starts from the restored books' equity, below zero after a short gone
    # wrong: dividing by it turned a gain into a loss.
    result = RunResult(starting_equity=Decimal(start))
    result.snapshots = {"a": make_snapshot("a", cash=final, equity=final)}
    assert result.total_return == Decimal(expected)


def test_money_in_the_summary_is_rounded_half_up() -> None:
    result = RunResult(starting_equity=Decimal("100000.005"))
    result.snapshots = {"a": make_snapshot("a", cash="0.125", equity="0.125")}
    result.commission_total = Decimal("2.345")
    text = result.format_summary()
    # Half-even would show 100,000.00, 0.12 and 2.34.
    assert "  starting equity 100,000.01" in text
    assert "  final equity    0.13" in text
    assert "  commission      2.35" in text
    assert equity_title(result.summary()).startswith("Equity: 100,000.01 -> 0.13 ")


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


def test_a_role_process_writes_only_what_it_measured(tmp_path: Path) -> None:
    # A strategy process of a split deployment wrote market_events 0 and trade_count 0 (it
    # handled every tick, and the fills are the portfolio process's), and a flat equity.png.
    result = RunResult(starting_equity=Decimal(100), market_events=0, dead_letter_count=2)
    written = result.write(tmp_path / "strategy", roles=["strategy", "risk"])
    assert set(written) == {"result"}
    summary = json.loads(written["result"].read_text())["summary"]
    assert summary["roles"] == ["risk", "strategy"]
    assert summary["market_events"] is None and summary["trade_count"] is None
    assert summary["final_equity"] is None and summary["dead_letters"] == 2
    feed = json.loads(result.write(tmp_path / "feed", roles=["feed"])["result"].read_text())
    assert feed["summary"]["market_events"] == 0 and feed["summary"]["final_equity"] is None
    books = result.write(tmp_path / "portfolio", roles=["portfolio"])
    assert set(books) == {"result", "equity_curve"}
    summary = json.loads(books["result"].read_text())["summary"]
    assert summary["final_equity"] == "100" and summary["market_events"] is None
    whole = json.loads(result.write(tmp_path / "all")["result"].read_text())["summary"]
    assert "roles" not in whole and whole["market_events"] == 0


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


@pytest.mark.parametrize(
    "start", [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC)]
)
def test_times_a_date_axis_cannot_hold_still_give_both_files(
    tmp_path: Path, start: datetime
) -> None:
    # A feed's zero time (Go's time.Time{} is year 1) reached the equity curve: matplotlib
    # refused the date axis, and the run lost its result.json with the picture.
    result = RunResult(starting_equity=Decimal(1000))
    result.snapshots = {"s": make_snapshot("s", cash=1010)}
    result.equity_curve.add(start, Decimal(1000))
    result.equity_curve.add(start + timedelta(minutes=30), Decimal(1010))
    written = result.write(tmp_path)
    assert json.loads(written["result"].read_text())["summary"]["final_equity"] == "1010"
    title = png_text(written["equity_curve"])["Title"]
    assert title == "Equity: 1,000.00 -> 1,010.00 (0 fills, max drawdown 0.00%)"


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


class _Observer:
    """Sees every event: market events then go through publish(), not the generated loop."""

    def __init__(self) -> None:
        self.seen = 0

    @tradeloom.hookimpl
    def tradeloom_event_observed(self, stage: str, direction: str, event: object) -> None:
        self.seen += 1


class _AsyncFeed:
    def __init__(self, events: list[MarketTick]) -> None:
        self._events = events

    async def events(self, ctx: object) -> AsyncIterator[MarketTick]:
        for event in self._events:
            yield event


@pytest.mark.parametrize("path", ["block", "publish"])
def test_the_period_of_daily_bars_names_their_days_as_the_data_does(path: str) -> None:
    # A daily bar's time is its end, the next midnight: the period is their starts.
    data = bars("X", ["10", "11", "12"], start=datetime(2014, 12, 29, tzinfo=UTC))
    plugins = [_Observer()] if path == "publish" else []
    result = tradeloom.backtest(
        {}, strategies={"idle": tradeloom.Strategy()}, events=data, plugins=plugins
    )
    assert result.first_event_time == datetime(2014, 12, 30, tzinfo=UTC)
    assert result.last_event_time == datetime(2015, 1, 1, tzinfo=UTC)
    assert (result.first_event_start, result.last_event_start) == (data[0].start, data[-1].start)
    assert "  period          2014-12-29 .. 2014-12-31\n" in result.format_summary()
    assert result.summary()["last_event_start"] == "2014-12-31T00:00:00+00:00"
    if plugins:
        assert plugins[0].seen >= len(data)


@pytest.mark.parametrize(
    ("zone", "days"),
    [("America/New_York", "1999-01-22 .. 1999-07-01"), ("Asia/Tokyo", "1999-01-22 .. 1999-07-01")],
)
def test_the_period_of_daily_bars_of_another_zone_names_their_days(
    tmp_path: Path, zone: str, days: str
) -> None:
    # Days from a midnight that is not UTC's (and one of them 23 hours long in New York):
    # named by the date of their middle, their own date.
    rows = ["Date,Open,High,Low,Close,Adj Close,Volume"] + [
        f"{day},10,11,9,10,10,100" for day in ("1999-01-22", "1999-03-26", "1999-07-01")
    ]
    path = tmp_path / "days.csv"
    path.write_text("\n".join(rows) + "\n")
    feed = {
        "name": "replay",
        "params": {"path": str(path), "format": "yahoo", "instrument": "X", "timezone": zone},
    }
    result = tradeloom.backtest({"feed": feed}, strategies={"idle": tradeloom.Strategy()})
    assert f"  period          {days}\n" in result.format_summary()


def test_the_period_of_ticks_is_their_times() -> None:
    start = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
    data = ticks("X", ["10", "11", "12"], start=start)
    result = tradeloom.backtest(
        {},
        strategies={"idle": tradeloom.Strategy()},
        feed=_AsyncFeed(data),  # type: ignore[arg-type]
    )
    assert (result.first_event_start, result.last_event_start) == (data[0].ts, data[-1].ts)
    assert (
        "  period          2024-03-04T14:30:00+00:00 .. 2024-03-04T14:30:02+00:00\n"
        in result.format_summary()
    )


def test_a_run_without_market_events_has_no_period() -> None:
    result = tradeloom.backtest({}, strategies={"idle": tradeloom.Strategy()}, events=[])
    assert result.first_event_start is None and result.last_event_start is None
    assert "  period          -\n" in result.format_summary()


def test_a_failed_run_says_so_in_its_result(tmp_path: Path) -> None:
    class Fails(tradeloom.Strategy):
        def on_bar(self, bar: Any, ctx: Any) -> None:
            if bar.close == 12:
                raise RuntimeError("indicator broke")

    pipeline = tradeloom.Pipeline(
        tradeloom.make_settings({}),
        mode="backtest",
        strategies={"s": Fails()},
        events=bars("X", ["10", "11", "12", "13"]),
    )
    with pytest.raises(tradeloom.errors.StrategyError):
        anyio.run(pipeline.run)
    result = pipeline.result
    assert result.failed is not None and result.failed.startswith("strategy 's' raised on bar")
    assert result.failed.endswith("RuntimeError: indicator broke")
    assert result.market_events == 3 and result.interrupted is None
    assert "  failed          strategy 's' raised on bar" in result.format_summary()
    title = png_text(result.write(tmp_path)["equity_curve"])["Title"]
    assert "\nfailed: strategy 's' raised on bar" in title


def test_result_json_says_what_each_rejected_signal_asked_for() -> None:
    class BuysTwoAtALimit(tradeloom.Strategy):
        def on_tick(self, tick: MarketTick, ctx: Any) -> None:
            if not ctx.open_quantity("X") and not ctx.position("X"):
                ctx.buy("X", "2.50", limit_price="9.75")

    result = run_strategy(
        BuysTwoAtALimit(),
        ticks("X", ["10", "10.5"]),
        validators=[{"name": "max_position", "params": {"limit": 1}}],
    )
    rejection = result.to_json()["rejections"][0]
    signal = result.rejections[0].signal
    assert rejection == {
        "signal_id": str(signal.event_id),
        "strategy_id": "strategy",
        "instrument": "X",
        "side": "buy",
        "quantity": "2.50",
        "order_type": "limit",
        "limit_price": "9.75",
        "signal_ts": signal.ts.isoformat(),
        "validator": "max_position",
        "reason": rejection["reason"],
        "ts": result.rejections[0].ts.isoformat(),
    }
    assert "2.50" in rejection["reason"]


def test_results_that_cannot_be_written_leave_the_earlier_pair_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The picture fails (a full disk) after the new result.json was written: neither file
    # of the earlier run is replaced, and nothing is left behind.
    earlier_run = run_strategy(tradeloom.Strategy(), bars("X", ["10", "11", "12"]))
    earlier_run.write(tmp_path)
    earlier = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    result = run_strategy(tradeloom.Strategy(), bars("X", ["20", "21"]))

    def disk_full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tradeloom.runtime.results.plot_equity_curve", disk_full)
    with pytest.raises(OSError, match="No space left"):
        result.write(tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == earlier


@pytest.mark.parametrize("earlier_result", [True, False])
def test_results_that_cannot_be_moved_in_leave_the_earlier_files_together(
    tmp_path: Path, earlier_result: bool
) -> None:
    # Both files were written; the second cannot take its place (a folder there): the first
    # was moved in already, and the folder held a result.json without its picture.
    run_strategy(tradeloom.Strategy(), bars("X", ["10", "11", "12"])).write(tmp_path)
    (tmp_path / "equity.png").unlink()
    (tmp_path / "equity.png").mkdir()
    if not earlier_result:
        (tmp_path / "result.json").unlink()  # nothing earlier to put back: the new one goes
    earlier = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    with pytest.raises(IsADirectoryError):
        run_strategy(tradeloom.Strategy(), bars("X", ["20", "21"])).write(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*earlier, "equity.png"])


def test_results_are_written_through_a_link_keeping_the_files_mode(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "result.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").symlink_to(elsewhere / "result.json")
    (out / "equity.png").write_bytes(b"")
    (out / "equity.png").chmod(0o640)
    run_strategy(tradeloom.Strategy(), bars("X", ["10", "11"])).write(out)
    assert (out / "result.json").is_symlink()
    assert json.loads((elsewhere / "result.json").read_text())["summary"]["market_events"] == 2
    assert (out / "equity.png").stat().st_mode & 0o777 == 0o640
    assert (out / "equity.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("closes", "said"), [(2, "(1 round trip)"), (4, "(2 round trips)")])
def test_the_summary_counts_round_trips_in_words(closes: int, said: str) -> None:
    class TurnsOver(tradeloom.Strategy):
        def on_bar(self, bar: Any, ctx: Any) -> None:
            (ctx.sell if ctx.position(bar.instrument) else ctx.buy)(bar.instrument, 1)

    result = run_strategy(TurnsOver(), bars("X", [str(10 + i) for i in range(closes + 1)]))
    assert said in result.format_summary()
