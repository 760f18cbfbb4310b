"""One process reading a broker topic (the Redpanda feed, the in-process transport) commits
what it read only once what it made is durable: fills that could not be journaled are not
lost with committed positions, their ticks are read again after a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from redpanda_support import FAST, journal, produce, synthetic_ts, tick_json
from redpanda_test_plugin import BuyEveryTick
from tansu_broker import Broker

from tradeloom.runtime.pipeline import Pipeline
from tradeloom.settings import Settings

GUARD_SECONDS = 60.0


def settings(broker: Broker, prefix: str, db: Path) -> Settings:
    return Settings(
        feed={
            "name": "redpanda",
            "params": {
                "bootstrap_servers": broker.bootstrap,
                "topic": f"{prefix}ticks",
                "group_id": f"{prefix}feed",
                "format": "json",
                **FAST,
            },
        },
        executor={"name": "paper", "params": {"fill_at": "last"}},
        # No waiting for a lock another connection holds: the journal write fails at once.
        persistence={"name": "sqlite", "params": {"path": str(db), "busy_timeout_seconds": 0}},
    )


async def ticks_in(broker: Broker, prefix: str, first: int, count: int) -> None:
    await produce(
        broker.bootstrap,
        f"{prefix}ticks",
        [(b"AA", tick_json("AA", Decimal("50.5"), synthetic_ts(n))) for n in range(first, count)],
    )


@contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """Another connection holds the database's write lock: a journal write fails at once."""
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def wait_for(predicate: Any, what: str) -> None:
    with anyio.fail_after(GUARD_SECONDS):
        while not predicate():
            await anyio.sleep(0.05)


def test_ticks_whose_fills_were_not_journaled_are_read_again_after_a_restart(
    broker: Broker, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "state.sqlite"
    first = Pipeline(settings(broker, prefix, db), mode="live", strategies={"b": BuyEveryTick()})

    async def until_the_journal_fails() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first.run)
            await ticks_in(broker, prefix, 0, 1)
            await wait_for(lambda: len(journal(db)) == 1, "the first fill journaled")
            with write_lock_held(db):  # journaling fails from now
                await ticks_in(broker, prefix, 1, 6)
                await wait_for(lambda: len(first.result.fills) == 6, "five more fills")
                await wait_for(lambda: first.status.persistence_errors > 0, "a failed journal")
                first.stop()  # its final save fails as well
                await wait_for(lambda: first.status.stopped_at is not None, "the stop")

    with caplog.at_level("ERROR", logger="tradeloom"):
        anyio.run(until_the_journal_fails)
    assert first.result.unsaved_portfolios == ["b"]
    assert first.result.summary()["unsaved_portfolios"] == ["b"]  # in result.json too
    assert len(journal(db)) == 1
    assert "feed positions left uncommitted (they are read again on restart)" in caplog.text

    # Restarted with a working journal: the five ticks were not committed, so they come
    # again and their fills are journaled (before, they were committed and lost for good).
    second = Pipeline(settings(broker, prefix, db), mode="live", strategies={"b": BuyEveryTick()})

    async def restarted() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(second.run)
            await wait_for(lambda: len(journal(db)) == 6, "the five fills journaled")
            second.stop()

    anyio.run(restarted)
    assert second.result.market_events == second.result.fill_count == 5
    fills = journal(db)
    assert len({fill.order_id for fill in fills}) == len(fills) == 6


def test_a_journal_outage_is_logged_once_and_its_end_too(
    broker: Broker, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "state.sqlite"
    pipeline = Pipeline(settings(broker, prefix, db), mode="live", strategies={"b": BuyEveryTick()})

    async def outage() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            await ticks_in(broker, prefix, 0, 1)
            await wait_for(lambda: len(journal(db)) == 1, "the first fill journaled")
            with write_lock_held(db):
                for n in range(1, 4):  # one batch after another, each retrying the journal
                    await ticks_in(broker, prefix, n, n + 1)
                    await wait_for(lambda n=n: pipeline.status.persistence_errors >= n, "a failure")
            await ticks_in(broker, prefix, 4, 5)
            await wait_for(lambda: len(journal(db)) == 5, "every fill journaled")
            pipeline.stop()

    with caplog.at_level("WARNING", logger="tradeloom"):
        anyio.run(outage)
    failures = [r for r in caplog.records if "persistence failed while" in r.getMessage()]
    assert len(failures) == 1 and pipeline.status.persistence_errors >= 3
    assert "persistence works again after" in caplog.text
    assert pipeline.status.last_persistence_error is None
