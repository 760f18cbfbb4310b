"""Kill -9 a running pipeline, restart it, and check that the recovered books equal what the
fills journal says, that no fill is applied twice, and that the run carries on from there."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from tradeloom.portfolio import PortfolioBook
from tradeloom_sqlite.persistence import SqlitePersistence

SLOW_FEED = '''
"""A live-like feed for the crash test: a deterministic random walk, paced in real time."""
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anyio
from tradeloom import MarketTick, hookimpl
from tradeloom.components import Feed


class PacedWalk(Feed):
    def __init__(self, count: int = 1000, per_second: int = 2000, seed: int = 7) -> None:
        self.count, self.per_second, self.seed = count, per_second, seed

    async def _events(self, ctx):
        rng = random.Random(self.seed)
        price = Decimal("100.00")
        start = datetime(2024, 1, 2, tzinfo=UTC)
        for index in range(self.count):
            price = max(Decimal("1.00"), price + Decimal(rng.choice((-1, 1))) / 100)
            yield MarketTick(event_id=ctx.ids.new_id(), ts=start + timedelta(milliseconds=index),
                             instrument="WALK", last_price=price)
            if index % 10 == 9:
                await anyio.sleep(10 / self.per_second)

    def events(self, ctx):
        return self._events(ctx)


@hookimpl
def tradeloom_register_feeds():
    return {"paced_walk": PacedWalk}
'''


def write_config(tmp_path: Path, count: int) -> Path:
    (tmp_path / "paced_walk_plugin.py").write_text(SLOW_FEED)
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        f"""
[plugins]
modules = ["paced_walk_plugin"]

[feed]
name = "paced_walk"
params = {{ count = {count}, per_second = 2000 }}

[[strategies]]
name = "sma_cross"
params = {{ fast = 2, slow = 5, quantity = 3 }}

[executor]
name = "paper"
params = {{ fill_at = "last", commission_bps = 1 }}

[persistence]
name = "sqlite"
params = {{ path = "{tmp_path / "state.sqlite"}" }}

[portfolio]
starting_cash = 100000
snapshot_interval_seconds = 1.0
"""
    )
    return config


def start(config: Path, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tradeloom.cli", "run", "-c", str(config)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journaled_fills(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute("select count(*) from fills").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the schema is not there yet


def state(book: PortfolioBook, pid: str) -> tuple[object, ...]:
    portfolio = book.portfolio(pid)
    holding = portfolio.holdings.get("WALK")
    return (
        portfolio.cash,
        portfolio.fills_applied,
        portfolio.last_fill_id,
        portfolio.commission_paid,
        None
        if holding is None
        else (holding.quantity, holding.average_price, holding.realized_pnl),
    )


def load(db: Path) -> tuple[dict, list]:  # type: ignore[type-arg]
    persistence = SqlitePersistence(path=str(db))
    persistence.open()
    try:
        return persistence.load_snapshots(), persistence.load_fills()
    finally:
        persistence.close()


def test_sigkill_mid_run_then_restart_recovers_and_applies_no_fill_twice(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    config = write_config(tmp_path, count=200_000)  # far more than runs before the kill
    process = start(config, tmp_path)
    deadline = time.monotonic() + 60
    while journaled_fills(db) < 40 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.1)
    time.sleep(1.3)  # past at least one snapshot, into the fills after it
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    snapshots, fills = load(db)
    assert "sma_cross" in snapshots and len(fills) >= 40
    from_journal = PortfolioBook(Decimal(100000))
    for fill in fills:
        assert from_journal.apply_fill(fill)  # the journal holds each order once
    recovered = PortfolioBook(Decimal(100000))
    reapplied = recovered.restore(snapshots, fills)
    assert reapplied > 0  # the crash came after the last snapshot: the journal filled in
    assert state(recovered, "sma_cross") == state(from_journal, "sma_cross")
    crashed_fills = len(fills)

    # Restart on a short feed: it resumes from the recovered books and runs to the end.
    config = write_config(tmp_path, count=3000)
    done = start(config, tmp_path)
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    snapshots, fills = load(db)
    assert len(fills) > crashed_fills
    assert len({fill.order_id for fill in fills}) == len(fills)
    final = snapshots["sma_cross"]
    assert final.fills_applied == len(fills)
    replayed = PortfolioBook(Decimal(100000))
    for fill in fills:
        replayed.apply_fill(fill)
    portfolio = replayed.portfolio("sma_cross")
    assert (final.cash, final.last_fill_id) == (portfolio.cash, portfolio.last_fill_id)
    assert final.positions["WALK"].quantity == portfolio.position("WALK")
