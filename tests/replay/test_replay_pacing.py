"""``speed``: a replay at the data's own pace (or a multiple of it), on the wall clock.

The waits are the feature here, so these tests assert that they happen (a lower bound on the
time taken, far below the time an unscaled or uncapped wait would take) and that nothing else
changes: the same events, the same fills, counters and files closed as without pacing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

import tradeloom
from tradeloom.api import make_settings
from tradeloom.components import FeedContext
from tradeloom.errors import ConfigError
from tradeloom.plugins import PluginManager
from tradeloom.settings import load_settings
from tradeloom.testing.feeds import collect_events, make_feed_context
from tradeloom_replay.feed import ReplayFeed
from tradeloom_replay.pacing import Pacing

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
COLUMNS = {"ts": "ts", "last_price": "price"}


def tick_file(tmp_path: Path, gaps_seconds: list[float], name: str = "ticks.csv") -> Path:
    """Ticks at T0 and then each gap later, with prices that make a crossover strategy trade."""
    lines = ["ts,price"]
    ts = T0
    for index in range(len(gaps_seconds) + 1):
        if index:
            ts += timedelta(seconds=gaps_seconds[index - 1])
        price = Decimal(100) + Decimal((index * 7) % 11) / 4
        lines.append(f"{ts.isoformat()},{price}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def timed_collect(feed: ReplayFeed) -> tuple[list[Any], float]:
    started = time.monotonic()
    run = collect_events(feed)
    return run.events, time.monotonic() - started


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"speed": 0}, "speed must be a finite number above 0"),
        ({"speed": -2}, "speed must be a finite number above 0"),
        ({"speed": float("nan")}, "speed must be a finite number above 0"),
        ({"speed": float("inf")}, "speed must be a finite number above 0"),
        ({"speed": "fast"}, r"speed must be a finite number above 0 \(speed = 1 replays"),
        ({"speed": True}, "speed must be a finite number above 0"),
        ({"speed": [1]}, "speed must be a finite number above 0"),
        ({"speed": "sNaN"}, "speed must be a finite number above 0"),
        ({"speed": Decimal("sNaN")}, "speed must be a finite number above 0"),
        ({"speed": 10**400}, "speed must be a finite number above 0"),
        ({"speed": 1, "max_wait_seconds": 0}, "max_wait_seconds must be a finite number above 0"),
        ({"speed": 1, "max_wait_seconds": "-1"}, "max_wait_seconds must be a finite number"),
        ({"max_wait_seconds": 5}, "max_wait_seconds caps the waits of a paced replay: give speed"),
    ],
)
def test_wrong_pacing_is_a_clear_error(tmp_path, params, message) -> None:
    path = tick_file(tmp_path, [1])
    with pytest.raises(ValueError, match=message):
        ReplayFeed(path=path, instrument="X", columns=COLUMNS, **params)


def test_through_the_runtime_a_wrong_speed_is_a_config_error_naming_the_feed(tmp_path) -> None:
    manager = PluginManager().load(autoload=False, modules=["tradeloom_replay.plugin"])
    params = {"path": str(tick_file(tmp_path, [1])), "instrument": "X", "columns": COLUMNS}
    with pytest.raises(ConfigError, match=r"feed 'replay'.*speed must be a finite number above 0"):
        manager.create("feed", "replay", {**params, "speed": 0})


def test_numbers_may_come_as_text_from_the_environment(tmp_path, monkeypatch) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text(
        f"""[feed]
name = "replay"
[feed.params]
path = "{tick_file(tmp_path, [1])}"
instrument = "X"
columns = {{ ts = "ts", last_price = "price" }}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__SPEED", "60")
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__MAX_WAIT_SECONDS", " 2.5 ")
    settings = load_settings(config)
    assert settings.feed is not None
    manager = PluginManager().load(autoload=False, modules=["tradeloom_replay.plugin"])
    feed = manager.create("feed", "replay", settings.feed.params)
    assert isinstance(feed, ReplayFeed)
    assert feed.pacing == Pacing(speed=60.0, max_wait_seconds=2.5)


def run_context() -> FeedContext:
    return make_feed_context()


def test_without_speed_the_replay_is_a_plain_iterator(tmp_path) -> None:
    feed = ReplayFeed(path=tick_file(tmp_path, [1]), instrument="X", columns=COLUMNS)
    assert feed.pacing is None
    events = feed.events(run_context())
    assert not hasattr(events, "__aiter__")
    assert len(list(events)) == 2  # type: ignore[arg-type]


def test_events_come_as_far_apart_as_their_times_divided_by_speed(tmp_path) -> None:
    # Five gaps of 10 s at 100x: 0.5 s in all (unscaled it would be 50 s).
    path = tick_file(tmp_path, [10] * 5)
    unpaced = collect_events(ReplayFeed(path=path, instrument="X", columns=COLUMNS)).events
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=100)
    events, took = timed_collect(feed)
    assert took >= 0.45
    assert took < 10
    assert [(e.ts, e.last_price) for e in events] == [(e.ts, e.last_price) for e in unpaced]
    assert feed.events_emitted == 6 and feed.bad_rows == 0


def test_events_an_earlier_run_published_are_left_out_without_waiting(tmp_path) -> None:
    # Ten gaps of 100 s at real speed, then one of half a second: a restarted feed role that
    # published the first ten waits only for the last gap (not 1,000 s).
    path = tick_file(tmp_path, [100] * 10 + [0.5])
    unpaced = collect_events(ReplayFeed(path=path, instrument="X", columns=COLUMNS)).events
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=1)
    started = time.monotonic()
    run = collect_events(feed, skip_events=10)
    took = time.monotonic() - started
    assert 0.45 <= took < 10
    assert [(e.ts, e.last_price) for e in run.events] == [
        (e.ts, e.last_price) for e in unpaced[10:]
    ]
    assert feed.events_emitted == 2


def test_events_of_one_time_come_together_and_arrive_when_due(tmp_path) -> None:
    path = tick_file(tmp_path, [0, 0, 2, 0])
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=4)
    arrivals: list[tuple[datetime, float]] = []

    async def main() -> None:
        started = anyio.current_time()
        async for event in feed.events(run_context()):  # type: ignore[union-attr]
            arrivals.append((event.ts, anyio.current_time() - started))

    anyio.run(main)
    assert [ts for ts, _ in arrivals] == [T0] * 3 + [T0 + timedelta(seconds=2)] * 2
    first_three, last_two = [at for _, at in arrivals[:3]], [at for _, at in arrivals[3:]]
    assert max(first_three) < 0.4  # no wait between events of one time
    assert min(last_two) >= 0.45  # 2 s of data at 4x
    assert last_two[1] - last_two[0] < 0.4


def test_max_wait_seconds_caps_a_gap_in_the_data(tmp_path) -> None:
    # A weekend between two ticks: 2 days at 1x would wait 2 days, capped at 0.2 s.
    path = tick_file(tmp_path, [1, 2 * 86_400, 1])
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=10, max_wait_seconds=0.2)
    events, took = timed_collect(feed)
    assert len(events) == 4
    assert took >= 0.1 + 0.2 + 0.1 - 0.05
    assert took < 10


def test_a_consumer_that_fell_behind_catches_up_without_waits(tmp_path) -> None:
    # Due at 0, 0.1, ..., 0.5 s; the consumer spends 0.8 s on the first event, after which
    # every other one is overdue and comes at once.
    path = tick_file(tmp_path, [1] * 5)
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=10)
    arrivals: list[float] = []

    async def main() -> None:
        started = anyio.current_time()
        async for _ in feed.events(run_context()):  # type: ignore[union-attr]
            arrivals.append(anyio.current_time() - started)
            if len(arrivals) == 1:
                await anyio.sleep(0.8)

    anyio.run(main)
    assert len(arrivals) == 6
    assert arrivals[1] >= 0.8
    assert arrivals[-1] - arrivals[1] < 0.3  # not another 0.4 s of waits


def test_closing_a_paced_replay_closes_its_file(tmp_path) -> None:
    path = tick_file(tmp_path, [60] * 5)
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=1)

    async def main() -> list[Any]:
        seen = []
        events = feed.events(run_context())
        with anyio.fail_after(5):
            async for event in events:  # type: ignore[union-attr]
                seen.append(event)
                break  # the next one is a minute away
            await events.aclose()  # type: ignore[union-attr]
        return seen

    seen = anyio.run(main)
    assert len(seen) == 1
    assert feed.events_emitted == 1  # not the second, read but still waited for
    assert feed.rows_read == 1
    assert not list(feed._running)


def test_feed_close_ends_a_paced_replay_waiting_for_its_next_event(tmp_path) -> None:
    path = tick_file(tmp_path, [0.3] * 3 + [60] * 3)
    feed = ReplayFeed(path=path, instrument="X", columns=COLUMNS, speed=1)
    seen: list[Any] = []

    async def main() -> None:
        async def close_soon() -> None:
            await anyio.sleep(1.2)  # after the fourth tick, waiting for the fifth
            feed.close()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(close_soon)
                async for event in feed.events(run_context()):  # type: ignore[union-attr]
                    seen.append(event)

    anyio.run(main)
    assert len(seen) == 4
    assert feed.events_emitted == 4


def backtest_settings(path: Path, **params: Any) -> dict[str, Any]:
    return {
        "feed": {
            "name": "replay",
            "params": {"path": str(path), "instrument": "X", "columns": COLUMNS, **params},
        },
        "strategies": [{"name": "sma_cross", "params": {"fast": 2, "slow": 4}}],
        "executor": {"name": "paper"},
    }


@pytest.mark.parametrize("run", ["backtest", "run"])
def test_a_paced_run_trades_as_an_unpaced_one(tmp_path, run) -> None:
    path = tick_file(tmp_path, [1] * 40)
    unpaced = tradeloom.backtest(backtest_settings(path))
    started = time.monotonic()
    paced = getattr(tradeloom, run)(backtest_settings(path, speed=50))
    took = time.monotonic() - started
    assert took >= 0.75  # 40 s of data at 50x
    assert paced.market_events == unpaced.market_events == 41
    assert len(unpaced.fills) >= 4
    assert [(f.side, f.quantity, f.price, f.ts) for f in paced.fills] == [
        (f.side, f.quantity, f.price, f.ts) for f in unpaced.fills
    ]
    assert paced.final_equity == unpaced.final_equity


def test_tradeloom_run_serves_its_health_while_a_paced_replay_goes_on(tmp_path) -> None:
    """What docs/monitoring.md shows: a replay slow enough to query, ending by itself."""
    path = tick_file(tmp_path, [1] * 30)
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
[feed.params]
path = "{path}"
instrument = "X"
columns = {{ ts = "ts", last_price = "price" }}
speed = 10

[[strategies]]
name = "sma_cross"
params = {{ fast = 2, slow = 4 }}

[monitoring]
http_port = 0
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeloom.cli", "-v", "run", "-c", str(config), "--out", str(out)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            found = re.search(r"serving /health, /ready and /metrics on (\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "the run did not say where it serves"
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            assert response.status == 200
            reports = json.loads(response.read())
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert any(r["check"] == "market_data_freshness" for r in reports)
        strategy_in = re.search(
            r'tradeloom_stage_events_in_total\{stage="strategy"\} (\S+)', metrics
        )
        assert strategy_in is not None, metrics
        assert float(strategy_in.group(1)) < 31  # still replaying when asked
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["summary"]["market_events"] == 31


def test_the_docs_example_builds_a_paced_feed() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "replay-feed.md").read_text("utf-8")
    section = page[page.index("## Pacing") : page.index("## Formats")]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    params = tomllib.loads(block.group(1))["feed"]["params"]
    # The file tradeloom demo writes: the demo's own copy.
    demo = Path(tradeloom.__file__).resolve().parent / "demo"
    params["path"] = str(demo / Path(params["path"]).name)
    manager = PluginManager().load(autoload=False, modules=["tradeloom_replay.plugin"])
    feed = manager.create("feed", "replay", params)
    assert isinstance(feed, ReplayFeed)
    assert feed.pacing == Pacing(speed=86400.0, max_wait_seconds=1.0)
    first, second = collect_events(feed, limit=2).events
    assert (second.ts - first.ts).days == 1


def test_stopping_a_live_run_ends_the_wait_for_the_next_event(tmp_path) -> None:
    # Four ticks 0.2 s apart, then one a minute later: the stop comes during that wait.
    path = tick_file(tmp_path, [0.2] * 3 + [60])
    settings = backtest_settings(path, speed=1)
    pipeline = tradeloom.Pipeline(make_settings(settings), mode="live")
    feed = pipeline.feed

    async def main() -> Any:
        async def stop_soon() -> None:
            await anyio.sleep(1.5)
            pipeline.stop()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(stop_soon)
                return await pipeline.run()

    started = time.monotonic()
    result = anyio.run(main)
    assert time.monotonic() - started < 10
    assert result.market_events == 4
    assert isinstance(feed, ReplayFeed)
    assert feed.events_emitted == 4  # the fifth, read and waited for, was not handed out


def test_a_live_run_behind_its_pace_still_stops_when_told(tmp_path) -> None:
    # Every event is due at once (a pace the pipeline cannot keep): the run must still give
    # the event loop a turn, so that a stop (SIGTERM, Ctrl-C, the health server) is not kept
    # waiting until the file ends.
    path = tick_file(tmp_path, [1] * 200_000)
    pipeline = tradeloom.Pipeline(make_settings(backtest_settings(path, speed=1e9)), mode="live")

    async def main() -> Any:
        async def stop_soon() -> None:
            await anyio.sleep(0.3)
            pipeline.stop()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stop_soon)
            return await pipeline.run()

    result = anyio.run(main)
    assert 0 < result.market_events < 200_001
