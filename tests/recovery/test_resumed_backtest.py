"""A resumed backtest continues after the stored state instead of replaying it again.

The stored state already holds every event up to its latest time; a backtest resumed on the
same data (after Ctrl-C, or on a file that has grown since) skips those events, so no fill and
no P&L is counted twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from resume_support import AsyncEvents, orcl_config

import tradeloom
from tradeloom import Strategy, hookimpl
from tradeloom.errors import PersistenceError
from tradeloom.portfolio import PortfolioBook
from tradeloom.testing import bars, merge
from tradeloom_sqlite.persistence import SqlitePersistence


def test_a_backtest_resumed_on_longer_data_continues_where_the_state_ends(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = shared_data / "orcl-1995-2014.txt"
    lines = full.read_text().splitlines(keepends=True)
    first_half = tmp_path / "orcl-first-half.txt"
    first_half.write_text("".join(lines[:2501]))  # the header and 2,500 days
    state = tmp_path / "state.sqlite"

    first = tradeloom.backtest(orcl_config(first_half, state))
    assert first.market_events == 2500 and first.fill_count > 0
    with caplog.at_level("INFO", logger="tradeloom.pipeline"):
        second = tradeloom.backtest(orcl_config(full, state), resume=True)
    assert second.resumed_after == first.last_event_time
    assert (second.skipped_events, second.market_events) == (2500, 5036 - 2500)
    assert second.first_event_time is not None and second.resumed_after is not None
    assert second.first_event_time > second.resumed_after
    assert all(fill.ts > second.resumed_after for fill in second.fills)
    assert "skipped 2,500 market event(s) at or before it" in caplog.text
    assert second.starting_equity == first.final_equity

    # Each order's fill is in the journal once, and the books add up to the journal.
    persistence = SqlitePersistence(path=str(state))
    persistence.open()
    try:
        snapshots, fills = persistence.load_snapshots(), persistence.load_fills()
    finally:
        persistence.close()
    assert len(fills) == first.fill_count + second.fill_count
    assert len({fill.order_id for fill in fills}) == len(fills)
    snapshot = snapshots["sma_cross"]
    assert snapshot.fills_applied == len(fills)
    replayed = PortfolioBook(Decimal(100000))
    for fill in fills:
        replayed.apply_fill(fill)
    assert snapshot.cash == replayed.portfolio("sma_cross").cash
    assert second.final_equity == snapshot.equity


def test_resuming_on_the_same_data_backtests_nothing_and_says_so(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = orcl_config(shared_data / "orcl-1995-2014.txt", tmp_path / "state.sqlite")
    first = tradeloom.backtest(settings)
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        again = tradeloom.backtest(settings, resume=True)
    assert (again.skipped_events, again.market_events, again.fill_count) == (5036, 0, 0)
    assert again.final_equity == again.starting_equity == first.final_equity
    assert "all 5,036 market events of the feed are at or before it" in caplog.text
    assert again.summary()["resumed_after"] == first.last_event_time.isoformat()  # type: ignore[union-attr]


def test_a_resumed_run_stopped_while_it_warms_up_says_so(tmp_path: Path, shared_data: Path) -> None:
    # Where a Ctrl-C or SIGTERM would say it stopped, and what it kept: a run that has read
    # stored events only (here all of them) took no new one, and changed nothing.
    from tradeloom.api import make_settings
    from tradeloom.commands import _what_is_kept
    from tradeloom.runtime.pipeline import Pipeline

    settings = make_settings(
        orcl_config(shared_data / "orcl-1995-2014.txt", tmp_path / "state.sqlite")
    )
    tradeloom.backtest(settings)
    pipeline = Pipeline(settings, mode="backtest", resume=True)
    anyio.run(pipeline.run)
    assert pipeline.where_it_stopped() == (
        "while warming up on the stored state (5,036 of its market events read), before the "
        "first market event after it"
    )
    assert _what_is_kept(pipeline, settings, can_resume=True) == (
        "its state is as it was: run the same command again to continue from there"
    )


def write_tick_backtest(tmp_path: Path, ticks: int, seed: int) -> None:
    """A random walk of ``ticks`` one-second ticks (``ticks.csv``) and a configuration
    (``c.toml``) that backtests sma_cross on them with sqlite state (``state.sqlite``)."""
    rng = random.Random(seed)
    cents = 10_000
    rows = ["ts,price\n"]
    for second in range(ticks):
        cents = max(100, cents + rng.choice((-1, 1)))
        rows.append(f"{1_704_067_200 + second},{cents // 100}.{cents % 100:02d}\n")
    (tmp_path / "ticks.csv").write_text("".join(rows))
    (tmp_path / "c.toml").write_text(
        '[feed]\nname = "replay"\nparams = { path = "ticks.csv", instrument = "SYN", '
        'format = "custom", columns = { ts = "ts", last_price = "price" }, '
        'timestamp_format = "unix" }\n[[strategies]]\nname = "sma_cross"\n'
        '[persistence]\nname = "sqlite"\nparams = { path = "state.sqlite" }\n'
    )


def wait_until_well_into_the_run(tmp_path: Path, seconds: float = 1.0) -> None:
    """Until the backtest has made its state file, then ``seconds`` more: into the ticks, far
    from their end."""
    deadline = time.monotonic() + 60
    while not (tmp_path / "state.sqlite").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(seconds)


def test_a_backtest_interrupted_with_ctrl_c_resumes_where_it_stopped(tmp_path: Path) -> None:
    write_tick_backtest(tmp_path, 600_000, seed=7)
    command = [sys.executable, "-m", "tradeloom.cli", "backtest", "-c", "c.toml"]
    running = subprocess.Popen(
        [*command, "--out", "a"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_until_well_into_the_run(tmp_path, seconds=1.5)
    running.send_signal(signal.SIGINT)
    stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 130, stderr
    message = stderr.decode()
    assert message.startswith("tradeloom: interrupted at market time 2024-01-")
    assert message.endswith(
        "fills so far); its state is saved: add --resume to the same command to continue "
        "from there\n"
    )
    # What it did until then is written and shown, marked as interrupted.
    partial = json.loads((tmp_path / "a" / "result.json").read_text())
    where = partial["summary"]["interrupted"]
    assert where.startswith("at market time 2024-01-") and where in message
    assert where.endswith(f"({partial['summary']['trade_count']:,} fills so far)")
    assert len(partial["fills"]) == partial["summary"]["trade_count"] > 0
    assert 0 < partial["summary"]["market_events"] < 600_000
    assert partial["summary"]["last_event_time"] is not None
    assert "Backtest of c.toml (interrupted)" in stdout.decode()
    assert f"interrupted     {where}" in stdout.decode()

    resumed = subprocess.run(
        [*command, "--out", "b", "--resume"], cwd=tmp_path, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "b" / "result.json").read_text())["summary"]
    assert summary["skipped_events"] > 0 and summary["resumed_after"] is not None
    assert summary["skipped_events"] + summary["market_events"] == 600_000
    assert "resumed after" in resumed.stdout
    persistence = SqlitePersistence(path=str(tmp_path / "state.sqlite"))
    persistence.open()
    try:
        fills = persistence.load_fills()
        snapshot = persistence.load_snapshots()["sma_cross"]
    finally:
        persistence.close()
    assert len({fill.order_id for fill in fills}) == len(fills) == snapshot.fills_applied


def test_a_backtest_on_a_state_file_another_run_writes_fails_before_it_reads_it(
    tmp_path: Path, shared_data: Path
) -> None:
    state = tmp_path / "state.sqlite"
    other_run = SqlitePersistence(path=str(state))  # holds the file, as a running backtest does
    other_run.open()
    other_run.claim_for_writing()
    try:
        with pytest.raises(PersistenceError, match="two runs on one state file would corrupt it"):
            tradeloom.backtest(orcl_config(shared_data / "orcl-1995-2014.txt", state))
        # Refused before it read or wrote anything.
        assert (other_run.load_snapshots(), other_run.load_fills()) == ({}, [])
    finally:
        other_run.close()
    # Once the file is free, a backtest runs on it.
    assert tradeloom.backtest(orcl_config(shared_data / "orcl-1995-2014.txt", state)).fill_count > 0


class Recorder(Strategy):
    """Records every bar it sees; asks the pipeline to stop at the ``stop_at``-th bar."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.warmed_up_on: list[tuple[str, Any]] = []
        self.stop_at = stop_at
        self.pipeline: Any = None

    def on_bar(self, bar: Any, ctx: Any) -> None:
        if ctx.warming_up:
            self.warmed_up_on.append((bar.instrument, bar.ts))
            return
        self.seen.append((bar.instrument, bar.ts))
        if len(self.seen) == self.stop_at:
            self.pipeline.stop()


class Handle:
    def __init__(self, strategy: Recorder) -> None:
        self.strategy = strategy

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Any) -> None:
        self.strategy.pipeline = pipeline


def test_a_stopped_backtest_of_several_instruments_resumes_without_losing_a_bar(
    tmp_path: Path,
) -> None:
    # Three instruments' daily bars share each time; 1,024 events (a block) end one bar into
    # a day, so the stop must still finish that day for the resumed run to skip it all.
    closes = [str(100 + day % 9) for day in range(500)]
    data = merge(*(bars(name, closes) for name in ("AAA", "BBB", "CCC")))
    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    first = Recorder(stop_at=10)
    stopped = tradeloom.backtest(
        settings, strategies={"rec": first}, events=data, plugins=[Handle(first)]
    )
    assert stopped.market_events == 1026  # the block and the rest of its last day
    second = Recorder()
    resumed = tradeloom.backtest(settings, strategies={"rec": second}, events=data, resume=True)
    assert resumed.skipped_events == 1026 and resumed.market_events == 1500 - 1026
    assert sorted(first.seen + second.seen) == sorted((e.instrument, e.ts) for e in data)
    assert second.warmed_up_on == first.seen  # the resumed strategy saw what the state holds


@pytest.mark.parametrize("feed_kind", ["in time order", "async"])
def test_a_resumed_backtest_skips_every_stored_event_whatever_the_feed(
    tmp_path: Path, feed_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    first_days = [str(100 + day % 5) for day in range(60)]
    all_days = first_days + [str(100 + day % 7) for day in range(40)]
    config: dict[str, Any] = {
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
        "strategies": [
            {"name": "sma_cross", "params": {"fast": 2, "slow": 3}, "instruments": ["AAA", "BBB"]}
        ],
    }

    def run(days: list[str], **options: Any) -> Any:
        streams = [bars(name, days) for name in ("AAA", "BBB")]
        events = merge(*streams)
        if feed_kind == "async":
            return tradeloom.backtest(config, feed=AsyncEvents(events), **options)
        return tradeloom.backtest(config, events=events, **options)

    first = run(first_days)
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        second = run(all_days, resume=True)
    assert (second.skipped_events, second.market_events) == (120, 80)
    assert all(fill.ts > first.last_event_time for fill in second.fills)
    # No instrument reported unseen: both were, before the resume point.
    assert not [m for m in caplog.messages if "asked for instruments" in m]


class BuyFirst(Recorder):
    def on_bar(self, bar: Any, ctx: Any) -> None:
        if not self.seen:
            ctx.buy(bar.instrument, 1)
        super().on_bar(bar, ctx)


def test_the_stored_time_is_where_the_backtest_got_to_not_its_last_change(
    tmp_path: Path,
) -> None:
    # Saved at every block (a tiny interval), changed only by the first bar's buy: the final
    # save must still move the stored time on, or a resumed run replays the last blocks.
    data = bars("AAA", [str(100 + day % 9) for day in range(5000)])
    settings = {
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
        "portfolio": {"snapshot_interval_seconds": 1e-9},
    }
    first = BuyFirst(stop_at=1500)
    stopped = tradeloom.backtest(
        settings, strategies={"rec": first}, events=data, plugins=[Handle(first)]
    )
    assert stopped.fill_count == 1 and stopped.market_events == 2048  # two blocks
    resumed = tradeloom.backtest(settings, strategies={"rec": Recorder()}, events=data, resume=True)
    assert resumed.resumed_after == stopped.last_event_time
    assert (resumed.skipped_events, resumed.market_events) == (2048, 5000 - 2048)


@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_a_backtest_stopped_with_sigterm_saves_and_writes_what_it_did(
    tmp_path: Path, sigint: str
) -> None:
    # kill, timeout, a service manager or a cancelled CI job stop a backtest with SIGTERM:
    # as with Ctrl-C, its state is saved and its partial result written; the status is 143.
    # Also when SIGINT is ignored, as in a background job of a script.
    write_tick_backtest(tmp_path, 400_000, seed=11)
    command = [sys.executable, "-m", "tradeloom.cli", "backtest", "-c", "c.toml", "--out", "a"]
    ignore_sigint = (
        (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None
    )
    running = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=ignore_sigint,
    )
    wait_until_well_into_the_run(tmp_path)
    running.send_signal(signal.SIGTERM)
    stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 143, stderr
    message = stderr.decode()
    assert message.startswith("tradeloom: interrupted (SIGTERM) at market time 2024-01-")
    assert message.endswith(
        "its state is saved: add --resume to the same command to continue from there\n"
    )
    partial = json.loads((tmp_path / "a" / "result.json").read_text())["summary"]
    assert 0 < partial["market_events"] < 400_000 and partial["interrupted"] in message
    # Stopped where the run pauses, between two blocks of ticks (each at its own time), not
    # in the middle of an event.
    assert partial["market_events"] % 1024 == 0
    assert "Backtest of c.toml (interrupted)" in stdout.decode()
    persistence = SqlitePersistence(path=str(tmp_path / "state.sqlite"))
    persistence.open()
    try:
        assert len(persistence.load_fills()) == partial["trade_count"] > 0
    finally:
        persistence.close()


@pytest.mark.parametrize("persistence", ["memory", "sqlite"])
def test_resuming_from_no_state_says_the_backtest_starts_afresh(
    tmp_path: Path, persistence: str, caplog: pytest.LogCaptureFixture
) -> None:
    params = {"path": str(tmp_path / "empty.sqlite")} if persistence == "sqlite" else {}
    settings = {"persistence": {"name": persistence, "params": params}}
    strategy = {"s": tradeloom.Strategy()}
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        result = tradeloom.backtest(
            settings, strategies=strategy, events=bars("X", ["10"]), resume=True
        )
    assert result.market_events == 1 and result.resumed_after is None
    why = (
        "it keeps nothing between runs"
        if persistence == "memory"
        else "nothing was saved there yet"
    )
    assert (
        f"resume: the {persistence!r} persistence holds no state to resume from ({why}), so the "
        "backtest starts from empty books"
    ) in caplog.messages


def test_resuming_with_a_renamed_strategy_warns_of_the_stored_portfolio_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    data = bars("X", [str(100 + day % 9) for day in range(60)])
    first = {**state, "strategies": [{"name": "sma_cross", "params": {"fast": 2, "slow": 3}}]}
    tradeloom.backtest(first, events=data[:30])
    renamed = {
        **state,
        "strategies": [{"name": "sma_cross", "id": "other", "params": {"fast": 2, "slow": 3}}],
    }
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        resumed = tradeloom.backtest(renamed, events=data, resume=True)
    assert set(resumed.snapshots) == {"sma_cross", "other"}
    assert (
        "the stored state holds portfolio(s) 'sma_cross' that no strategy of this run trades: "
        "they are carried along as they are and count in the equity (portfolios are strategy "
        "ids: did one change? this run's: 'other')"
    ) in caplog.messages


@pytest.mark.parametrize("feed_kind", ["plain", "async"])
def test_a_backtest_stopped_in_on_start_leaves_nothing_for_a_resume_to_skip(
    tmp_path: Path, feed_kind: str
) -> None:
    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    data = bars("X", [str(100 + day % 9) for day in range(6)])

    class StopsAtOnce(Strategy):
        def on_start(self, ctx: Any) -> None:
            holder[0].stop()

    holder: list[Any] = []

    class Handle:
        @hookimpl
        def tradeloom_pipeline_started(self, pipeline: Any) -> None:
            holder.append(pipeline)

    given: dict[str, Any] = (
        {"events": data} if feed_kind == "plain" else {"feed": AsyncEvents(data)}
    )
    stopped = tradeloom.backtest(
        settings, strategies={"s": StopsAtOnce()}, plugins=[Handle()], **given
    )
    assert stopped.market_events == 0
    resumed = tradeloom.backtest(settings, strategies={"s": Strategy()}, resume=True, **given)
    assert (resumed.skipped_events, resumed.market_events) == (0, 6)


def test_a_resumed_backtest_stopped_in_on_start_leaves_the_state_where_it_was(
    tmp_path: Path,
) -> None:
    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    data = bars("X", [str(100 + day % 9) for day in range(6)])

    class BuysFirst(Strategy):
        def on_bar(self, bar: Any, ctx: Any) -> None:
            if not ctx.position("X") and not ctx.open_quantity("X"):
                ctx.buy("X", 1)

    first = tradeloom.backtest(settings, strategies={"s": BuysFirst()}, events=data[:3])
    assert first.fill_count == 1
    holder: list[Any] = []

    class StopsAtOnce(Strategy):
        def on_start(self, ctx: Any) -> None:
            holder[0].stop()

    class Handle:
        @hookimpl
        def tradeloom_pipeline_started(self, pipeline: Any) -> None:
            holder.append(pipeline)

    stopped = tradeloom.backtest(
        settings, strategies={"s": StopsAtOnce()}, events=data, resume=True, plugins=[Handle()]
    )
    assert (stopped.skipped_events, stopped.market_events) == (3, 0)
    again = tradeloom.backtest(settings, strategies={"s": BuysFirst()}, events=data, resume=True)
    assert (again.skipped_events, again.market_events) == (3, 3)


def test_a_repeated_sigterm_while_the_backtest_stops_does_not_cut_it_short(
    tmp_path: Path,
) -> None:
    # A supervisor may send SIGTERM again while the run saves and closes (here a plugin takes
    # its time in tradeloom_pipeline_stopped): the run still finishes stopping and writes.
    (tmp_path / "slowstop.py").write_text(
        "import time\nfrom tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_pipeline_stopped(pipeline, result):\n"
        "    print('stopping slowly', flush=True)\n    time.sleep(2)\n"
    )
    write_tick_backtest(tmp_path, 400_000, seed=13)
    command = [sys.executable, "-m", "tradeloom.cli", "-p", "slowstop", "backtest", "-c", "c.toml"]
    running = subprocess.Popen(
        [*command, "--out", "a"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    wait_until_well_into_the_run(tmp_path)
    running.send_signal(signal.SIGTERM)
    time.sleep(0.7)  # in the plugin's slow stop
    running.send_signal(signal.SIGTERM)
    stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 143, stderr
    assert "stopping slowly" in stdout.decode()
    assert "Backtest of c.toml (interrupted)" in stdout.decode()
    summary = json.loads((tmp_path / "a" / "result.json").read_text())["summary"]
    assert summary["interrupted"] is not None and 0 < summary["market_events"] < 400_000


def _orcl_toml(tmp_path: Path, data: Path, extra: str = "") -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'{extra}[feed]\nname = "replay"\nparams = {{ path = "{data}", format = "yahoo", '
        'instrument = "ORCL" }\n[[strategies]]\nname = "sma_cross"\n'
        '[persistence]\nname = "sqlite"\nparams = { path = "state.sqlite" }\n'
    )
    return config


def _backtest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradeloom", "backtest", "-c", "c.toml", "--out", "o", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_resumed_backtest_that_fails_says_to_run_the_same_command_again(
    tmp_path: Path, shared_data: Path
) -> None:
    lines = (shared_data / "orcl-1995-2014.txt").read_text().splitlines(keepends=True)
    (tmp_path / "first.txt").write_text("".join(lines[:2501]))
    _orcl_toml(tmp_path, tmp_path / "first.txt")
    assert _backtest(tmp_path).returncode == 0
    (tmp_path / "breaks_in_2005.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "class BreaksIn2005(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        if bar.ts.year == 2005:\n"
        "            raise RuntimeError('kaboom')\n"
        "@hookimpl\n"
        "def tradeloom_register_strategies():\n"
        "    return {'breaks_in_2005': BreaksIn2005}\n"
    )
    config = _orcl_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        extra='[plugins]\nmodules = ["breaks_in_2005"]\n',
    )
    config.write_text(config.read_text() + '[[strategies]]\nname = "breaks_in_2005"\n')
    done = _backtest(tmp_path, "--resume")
    assert done.returncode == 1, done.stderr
    assert "strategy 'breaks_in_2005' raised on bar" in done.stderr
    assert done.stderr.endswith(
        "tradeloom: its state up to the failure is saved: once the cause is fixed, run the same "
        "command again to continue from there (or delete that state to start over)\n"
    )


def test_stored_fills_that_do_not_fit_the_snapshots_name_the_store_and_nothing_else(
    tmp_path: Path, shared_data: Path
) -> None:
    _orcl_toml(tmp_path, shared_data / "orcl-1995-2014.txt")
    assert _backtest(tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "state.sqlite") as raw:
        (fill_id,) = raw.execute(
            "DELETE FROM fills WHERE seq = (SELECT max(seq) FROM fills) RETURNING fill_id"
        ).fetchone()
    raw.close()
    done = _backtest(tmp_path, "--resume")
    assert done.returncode == 1
    # The state could not be used, so the run changed nothing there: no advice to resume.
    assert done.stderr == (
        "tradeloom: error: the 'sqlite' persistence at state.sqlite: snapshots refer to fills "
        f"that are not in the fills journal: sma_cross (fill {fill_id})\n"
    )
