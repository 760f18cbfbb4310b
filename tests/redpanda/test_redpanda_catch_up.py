"""A strategy (or risk) process keeps its own book of the fills. When it is assigned the fills
topic's partitions (at start, or taking over those of a member that left) it catches up: it
applies what the journal holds, and reads again the fills the portfolio has not journaled yet
(after the portfolio group's committed position), though its own group committed past them."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redpanda_support import FAST, produce
from tansu_broker import Broker

from tradeloom import Strategy, hookimpl
from tradeloom.events import Fill
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.runtime.stages import RiskStage, StrategyStage
from tradeloom.settings import Settings
from tradeloom.testing.persistence import make_fill
from tradeloom_decimal.codec import DecimalJsonCodec
from tradeloom_redpanda.transport import RedpandaTransport
from tradeloom_sqlite.persistence import SqlitePersistence

GUARD_SECONDS = 30.0
T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def buy(n: int) -> Fill:
    return make_fill(
        "s", instrument="AA", quantity=1, price=10, commission=0, ts=T0 + timedelta(seconds=n)
    )


def book_keeping_process(transport: dict[str, Any], db: Path, roles: list[str]) -> Pipeline:
    """A live process of ``roles`` that keep books of strategy ``s`` (state in ``db``)."""
    return Pipeline(
        Settings(
            pipeline={"transport": "redpanda"},
            transport=transport,
            persistence={"name": "sqlite", "params": {"path": str(db)}},
        ),
        mode="live",
        roles=roles,
        strategies={"s": Strategy()},
    )


async def commit(broker: Broker, group: str, partition: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: offset})
    finally:
        await consumer.stop()


@pytest.mark.parametrize("portfolio_committed", [3, None])
def test_a_strategy_process_reads_again_the_fills_the_journal_does_not_hold(
    broker: Broker,
    prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    portfolio_committed: int | None,
) -> None:
    # Six fills on the topic. The portfolio journaled three and committed after them (or it
    # was down from the start and committed nothing); the strategy group (a process that was
    # restarted, or a member that left) committed all six.
    fills = [buy(n) for n in range(6)]
    db = tmp_path / "state.sqlite"
    store = SqlitePersistence(db)
    store.open()
    store.record_fills(fills[:3])
    store.close()
    connection: dict[str, Any] = {"bootstrap_servers": broker.bootstrap, **FAST}
    transport = {**connection, "topic_prefix": prefix, "group_prefix": prefix, "partitions": 1}
    fills_topic = TopicPartition(f"{prefix}fills", 0)

    async def prepare() -> None:
        creator = RedpandaTransport(**transport)
        await creator.start()
        await creator.close()
        codec = DecimalJsonCodec()
        await produce(
            broker.bootstrap, fills_topic.topic, [(b"AA", codec.encode(f)) for f in fills]
        )
        if portfolio_committed is not None:
            await commit(broker, f"{prefix}portfolio", fills_topic, portfolio_committed)
        await commit(broker, f"{prefix}strategy", fills_topic, 6)
        await commit(broker, f"{prefix}risk", fills_topic, 6)

    anyio.run(prepare)

    pipeline = book_keeping_process(transport, db, ["strategy", "risk"])
    books = {}

    async def run() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(GUARD_SECONDS):
                while len(pipeline.stages) < 2:
                    await anyio.sleep(0.05)
                for stage in pipeline.stages:
                    books[type(stage)] = stage.book  # type: ignore[attr-defined]
                while any(b.portfolio("s").position("AA") < 6 for b in books.values()):
                    await anyio.sleep(0.05)
            await asyncio.sleep(0.5)  # nothing more comes: a seventh would show below
            pipeline.stop()

    with caplog.at_level(logging.INFO, logger="tradeloom"):
        anyio.run(run)
    for kind in (StrategyStage, RiskStage):
        portfolio = books[kind].portfolio("s")
        assert portfolio.position("AA") == 6 and portfolio.cash == Decimal(100000) - 60
    if portfolio_committed is None:
        assert f"reading {fills_topic.topic}[0] again from its start" in caplog.text
    else:
        assert f"reading {fills_topic.topic}[0] again from 3, where the journal ends" in (
            caplog.text
        )


class CountingSqlite(SqlitePersistence):
    """The sqlite back end, noting how the journal is read after start-up."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.reads: list[object] = []

    def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        self.reads.append("whole journal")
        return super().load_fills(portfolio_id)

    def load_fills_after(self, count: int) -> list[Fill]:
        self.reads.append(count)
        return super().load_fills_after(count)


class WholeJournalSqlite(CountingSqlite):
    """A back end without the optional ``load_fills_after``."""

    load_fills_after = None  # type: ignore[assignment]


class Backends:
    @hookimpl
    def tradeloom_register_persistence(self) -> dict[str, type]:
        return {"counting_sqlite": CountingSqlite, "whole_journal_sqlite": WholeJournalSqlite}


@pytest.mark.parametrize(
    ("backend", "reads"),
    [
        ("counting_sqlite", [1, 3, 3]),
        ("whole_journal_sqlite", ["whole journal"] * 3),
    ],
)
def test_a_strategy_process_started_later_takes_what_the_journal_holds(
    broker: Broker, prefix: str, tmp_path: Path, backend: str, reads: list[object]
) -> None:
    # Nothing on the topic for this group to read: the journal alone tells the book (the
    # journal gained fills after the process loaded its state at start). A back end with
    # load_fills_after is asked only for what was journaled since the last read.
    db = tmp_path / "state.sqlite"
    store = SqlitePersistence(db)
    store.open()
    store.record_fills([buy(0)])
    store.close()
    connection: dict[str, Any] = {"bootstrap_servers": broker.bootstrap, **FAST}
    transport = {**connection, "topic_prefix": prefix, "group_prefix": prefix, "partitions": 1}
    pipeline = Pipeline(
        Settings(
            pipeline={"transport": "redpanda"},
            transport=transport,
            persistence={"name": backend, "params": {"path": str(db)}},
        ),
        mode="live",
        roles=["strategy"],
        strategies={"s": Strategy()},
        plugins=[Backends()],
    )

    def journal(*fills: Fill) -> None:  # by the portfolio process, meanwhile
        writer = SqlitePersistence(db)
        writer.open()
        writer.record_fills(list(fills))
        writer.close()

    async def run() -> None:
        async with anyio.create_task_group() as tasks:
            await pipeline._assemble_stages()  # loads the state, as run() does first
            persistence = pipeline.persistence
            assert isinstance(persistence, CountingSqlite)
            persistence.reads.clear()  # the start-up load
            journal(buy(1), buy(2))
            book = pipeline.stages[0].book  # type: ignore[attr-defined]
            assert book.portfolio("s").position("AA") == 1
            hooks = pipeline.transport._roles["strategy"].assignment_hooks  # type: ignore[attr-defined]

            async def assigned() -> int:
                for hook in hooks:
                    await hook()
                return int(book.portfolio("s").position("AA"))

            assert await assigned() == 3
            assert await assigned() == 3  # again: nothing applied twice
            journal(buy(3))
            assert await assigned() == 4
            assert persistence.reads == reads
            tasks.cancel_scope.cancel()

    anyio.run(run)
