"""Parity: ticks written by a plain aiokafka producer (an outside system) flow through five
separate role processes and give the same fills as the same ticks in one process on the memory
transport.

Across processes the order in which a stage sees events of different topics depends on timing,
so the producer paces the stream the way live ticks are paced: after a tick that makes a
signal, the next tick comes only once the executor has taken the order (its process's
``/metrics`` count every tick so far and the order: a waiting order keeps its record
uncommitted), and after a tick that makes a fill, only once the strategy has seen the fill
(its group committed past it). The memory run tells which ticks those are.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redpanda_support import (
    GroupPositions,
    RoleProcess,
    journal,
    pipeline_config,
    synthetic_ts,
    tick_json,
    wait_until,
    wall_ts,
    write_config,
)
from tansu_broker import Broker

from tradeloom.events import MarketTick
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.settings import Settings

SMA = {"name": "sma_cross", "id": "sma", "params": {"fast": 3, "slow": 8, "quantity": "10"}}
FILL_AT_NEXT = {"name": "paper", "params": {"fill_at": "next", "commission_bps": "5"}}
SYMBOLS = ("AAA", "BBB")
ROUNDS = 60
WAIT_SECONDS = 20.0
EXECUTION_EVENTS_IN = re.compile(
    r'^tradeloom_stage_events_in_total\{stage="execution"\} (\S+)$', re.MULTILINE
)


def _prices() -> list[tuple[str, Decimal]]:
    series = []
    for n in range(ROUNDS):
        for k, symbol in enumerate(SYMBOLS):
            wave = 6 * math.sin(n / 4 + k) + 2 * math.sin(n / 1.7 + 2 * k)
            series.append((symbol, Decimal(f"{100 + k * 20 + wave:.2f}")))
    return series


def _reference(prices: list[tuple[str, Decimal]], ids: Any) -> Any:
    ticks = [
        MarketTick(event_id=ids.new_id(), ts=synthetic_ts(i), instrument=symbol, last_price=price)
        for i, (symbol, price) in enumerate(prices)
    ]
    settings = Settings(strategies=[SMA], executor=FILL_AT_NEXT)
    return Pipeline(settings, mode="backtest", events=ticks).run, ticks


def _fill_key(fill: Any) -> tuple[str, str, Decimal, Decimal]:
    return (fill.instrument, fill.side.value, fill.quantity, fill.price)


class _Observer:
    """Reads a topic from its start without a group and remembers where each record is."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10
        )
        self.records: list[tuple[TopicPartition, int]] = []

    async def start(self) -> None:
        await self.consumer.start()
        partitions = None
        while not partitions:
            await self.consumer.topics()
            partitions = self.consumer.partitions_for_topic(self.topic)
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        await self.consumer.seek_to_beginning(*assigned)

    async def until(self, count: int) -> list[tuple[TopicPartition, int]]:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.records) < count:
            assert time.monotonic() < deadline, f"{self.topic}: {len(self.records)} of {count}"
            batch = await self.consumer.getmany(timeout_ms=50)
            for partition, items in batch.items():
                self.records.extend((partition, item.offset) for item in items)
        return self.records[count - 1 : count]


async def _committed_past(
    positions: GroupPositions, group: str, where: list[tuple[TopicPartition, int]]
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        committed = [await positions.committed(group, partition) for partition, _ in where]
        if all(done > offset for done, (_, offset) in zip(committed, where, strict=True)):
            return
        assert time.monotonic() < deadline, f"group {group} did not commit past {where}"
        await asyncio.sleep(0.02)


async def _execution_took(metrics_url: str, events: int) -> None:
    """Wait until the execution stage has taken in ``events`` events (ticks and orders)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        text = await asyncio.to_thread(_read_url, metrics_url)
        found = re.search(
            r'^tradeloom_stage_events_in_total\{stage="execution"\} (\S+)$', text, re.M
        )
        taken = float(found.group(1)) if found else 0.0
        if taken >= events:
            return
        assert time.monotonic() < deadline, f"the execution stage took {taken:g} of {events}"
        await asyncio.sleep(0.02)


def _read_url(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def _paced_stream(
    bootstrap: str,
    prefix: str,
    prices: list[tuple[str, Decimal]],
    orders_after: dict[int, int],
    fills_after: dict[int, int],
    execution_metrics: str,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    positions = GroupPositions(bootstrap)
    orders = _Observer(bootstrap, f"{prefix}orders")
    fills = _Observer(bootstrap, f"{prefix}fills")
    await producer.start()
    await orders.start()
    await fills.start()
    try:
        for index, (symbol, price) in enumerate(prices):
            await producer.send_and_wait(
                f"{prefix}ticks", tick_json(symbol, price, wall_ts()), key=symbol.encode()
            )
            if index in orders_after:
                await orders.until(orders_after[index])
                await _execution_took(execution_metrics, index + 1 + orders_after[index])
            if index in fills_after:
                filled = await fills.until(fills_after[index])
                await _committed_past(positions, f"{prefix}strategy", filled)
    finally:
        await positions.close()
        for client in (orders.consumer, fills.consumer, producer):
            await client.stop()


def test_role_processes_give_the_fills_of_one_memory_process(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    from tradeloom_uuid7.generator import Uuid7Generator

    prices = _prices()
    run, ticks = _reference(prices, Uuid7Generator())
    expected = asyncio.run(run())
    assert len(expected.fills) >= 6, "the data must make the strategy trade"

    # Which tick made each order (the tick before its fill, or its unfilled signal) and
    # which tick made each fill, in the memory run.
    index_of = {(tick.instrument, tick.ts): i for i, tick in enumerate(ticks)}
    previous_of: dict[int, int] = {}
    last_seen: dict[str, int] = {}
    for i, tick in enumerate(ticks):
        if tick.instrument in last_seen:
            previous_of[i] = last_seen[tick.instrument]
        last_seen[tick.instrument] = i
    fill_ticks = [index_of[(f.instrument, f.ts)] for f in expected.fills]
    order_ticks = sorted(
        [previous_of[i] for i in fill_ticks]
        + [index_of[(r.signal.instrument, r.signal.ts)] for r in expected.rejections]
    )
    assert not set(order_ticks) & set(fill_ticks), (
        "the data must not signal on a tick that also fills: across processes the strategy "
        "could see that tick before its fill"
    )
    orders_after = {tick: n + 1 for n, tick in enumerate(order_ticks)}
    fills_after = {tick: n + 1 for n, tick in enumerate(sorted(fill_ticks))}

    db = tmp_path / "book.sqlite"
    document = pipeline_config(
        bootstrap=broker.bootstrap, prefix=prefix, db_path=db, strategy=SMA, executor=FILL_AT_NEXT
    )
    document["monitoring"] = {"http_port": 0}
    config = write_config(tmp_path / "pipeline.toml", document)
    processes = [
        RoleProcess(config, [role], tmp_path, role).start()
        for role in ("feed", "strategy", "risk", "execution", "portfolio")
    ]
    try:
        for process in processes:
            process.wait_ready()
        execution_metrics = processes[3].metrics_url()
        asyncio.run(
            _paced_stream(
                broker.bootstrap, prefix, prices, orders_after, fills_after, execution_metrics
            )
        )
        wait_until(lambda: len(journal(db)) >= len(expected.fills), 30, "every fill journaled")
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    finally:
        for process in processes:
            process.kill()

    got = journal(db)
    assert sorted(map(_fill_key, got)) == sorted(map(_fill_key, expected.fills))
    for symbol in SYMBOLS:  # and in the same order per instrument
        assert [_fill_key(f) for f in got if f.instrument == symbol] == [
            _fill_key(f) for f in expected.fills if f.instrument == symbol
        ]
    assert [f.commission for f in sorted(got, key=_fill_key)] == [
        f.commission for f in sorted(expected.fills, key=_fill_key)
    ]
