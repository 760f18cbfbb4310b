"""A backtest killed with ``kill -9`` and resumed trades as one that never stopped.

Its periodic checkpoints, taken at a pause between two times, store a state a resume continues
from as from a stop there: every portfolio stamped with that time and the record of the orders
in flight. The strategy here always has a limit order resting, so whenever the kill comes, the
state holds one waiting at the executor: without the record, the resumed run would lose it.
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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradeloom.runtime.in_flight import IN_FLIGHT_KEY
from tradeloom_sqlite.persistence import SqlitePersistence

LADDER = '''
"""Always one limit order resting: a buy 20 cents under the price while flat, a sell 20 cents
over it while long."""
from decimal import Decimal

from tradeloom import hookimpl
from tradeloom.strategy import Strategy

STEP = Decimal("0.20")


class Ladder(Strategy):
    def on_tick(self, tick, ctx):
        if ctx.open_quantity(tick.instrument):
            return
        if ctx.position(tick.instrument):
            ctx.sell(tick.instrument, 1, limit_price=tick.last_price + STEP)
        else:
            ctx.buy(tick.instrument, 1, limit_price=tick.last_price - STEP)


@hookimpl
def tradeloom_register_strategies():
    return {"ladder": Ladder}
'''

TICKS = 400_000


def write_walk(path: Path, count: int) -> None:
    rng = random.Random(11)
    start = datetime(2024, 1, 2, tzinfo=UTC)
    cents = 10_000
    lines = ["ts,price"]
    for index in range(count):
        cents = min(max(cents + rng.choice((-1, 1)), 9_000), 11_000)
        lines.append(f"{(start + timedelta(seconds=index)).isoformat()},{cents / 100:.2f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(tmp_path: Path, name: str, data: Path) -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f"""
[plugins]
modules = ["ladder_plugin"]

[feed]
name = "replay"
[feed.params]
path = "{data}"
instrument = "WALK"
columns = {{ ts = "ts", last_price = "price" }}

[[strategies]]
name = "ladder"

[executor]
name = "paper"

[persistence]
name = "sqlite"
params = {{ path = "{tmp_path / f"{name}.sqlite"}" }}

[portfolio]
starting_cash = 100000
snapshot_interval_seconds = 0.2
""",
        encoding="utf-8",
    )
    return config


def backtest(tmp_path: Path, config: Path, *args: str) -> subprocess.Popen[str]:
    out = tmp_path / f"out-{config.stem}"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradeloom.cli",
            "backtest",
            "-c",
            str(config),
            "--out",
            str(out),
            "--no-progress",
            *args,
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_record(db: Path) -> dict[str, Any] | None:
    """The in-flight record in the state file, read as another process can while it runs."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            row = connection.execute(
                "select value from tradeloom_metadata where key = ?", (IN_FLIGHT_KEY,)
            ).fetchone()
    except sqlite3.OperationalError:
        return None  # no table yet
    return None if row is None else json.loads(row[0])


def journal(db: Path) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    persistence = SqlitePersistence(path=str(db))
    persistence.open()
    try:
        fills = [
            (f.ts, f.side, f.quantity, f.price, f.commission) for f in persistence.load_fills()
        ]
        return fills, persistence.load_snapshots()
    finally:
        persistence.close()


def test_a_backtest_killed_after_a_checkpoint_resumes_with_its_resting_orders(
    tmp_path: Path,
) -> None:
    (tmp_path / "ladder_plugin.py").write_text(LADDER, encoding="utf-8")
    data = tmp_path / "walk.csv"
    write_walk(data, TICKS)

    whole = backtest(tmp_path, write_config(tmp_path, "whole", data))
    _, stderr = whole.communicate(timeout=300)
    assert whole.returncode == 0, stderr
    expected, _ = journal(tmp_path / "whole.sqlite")
    assert len(expected) > 20

    config = write_config(tmp_path, "killed", data)
    db = tmp_path / "killed.sqlite"
    killed = backtest(tmp_path, config)
    deadline = time.monotonic() + 120
    seen = None
    while time.monotonic() < deadline:
        seen = stored_record(db)
        if (seen is not None and seen["orders"]) or killed.poll() is not None:
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the backtest ended before it could be killed"
    assert seen is not None and seen["orders"], "no order in flight was recorded"
    assert Decimal(seen["orders"][0]["limit_price"]) > 0  # a resting limit order

    record = stored_record(db)  # a later checkpoint's, maybe
    fills_at_kill, snapshots = journal(db)
    assert record is not None
    # The record is that of the stored state's time: the latest snapshot's (and no fill later).
    stored_time = max(s.ts for s in snapshots.values())
    assert datetime.fromisoformat(record["time"]) == stored_time
    assert all(ts <= stored_time for ts, *_ in fills_at_kill)
    assert len(fills_at_kill) < len(expected), "killed only after its input ended"

    resumed = backtest(tmp_path, config, "--resume")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    got, _ = journal(db)
    assert got == expected
