"""A replay published to a real broker by a feed role process goes on where it got to when the
process is restarted: after a drained stop (SIGTERM) nothing is published twice; after
``kill -9`` what came after the last saved position is published again with the ids it had, and
a consuming process skips those repeats, so every tick is traded once.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redpanda_support import (
    RoleProcess,
    journal,
    pipeline_config,
    produce,
    read_topic,
    running,
    wait_until,
    write_config,
)
from tansu_broker import Broker

from tradeloom.events import MarketTick
from tradeloom.runtime.replay_position import decode_position, feed_key
from tradeloom.settings import load_settings
from tradeloom_decimal.codec import DecimalJsonCodec
from tradeloom_redpanda.dead_letters import read_headers
from tradeloom_replay.feed import ReplayFeed

CODEC = DecimalJsonCodec()
SYMBOLS = ("AAA", "BBB", "CCC")
ROUNDS = 400  # ticks per symbol, one second of data apart
SPEED = 200  # seconds of data per second: the replay takes about two seconds
START = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
BAD_LINES = (5, 1_100)  # lines of the file with a bad row (the header is line 1)
RESUMED = re.compile(r"an earlier run published its first (\d+) event\(s\)")

Row = tuple[str, datetime, Decimal]


def _write_ticks(path: Path) -> list[Row]:
    rows = [
        (symbol, START + timedelta(seconds=n), Decimal(100 + n) + Decimal(index) / 4)
        for n in range(ROUNDS)
        for index, symbol in enumerate(SYMBOLS)
    ]
    lines = ["symbol,ts,price"] + [f"{s},{ts.isoformat()},{price}" for s, ts, price in rows]
    for line in BAD_LINES:  # a negative price, in the first and the last third
        lines.insert(line - 1, f"AAA,{rows[line][1].isoformat()},-1")
    path.write_text("\n".join(lines) + "\n")
    return rows


def _good_rows_before(line: int) -> int:
    return line - 2 - sum(1 for bad in BAD_LINES if bad < line)


def _config(
    tmp_path: Path, broker: Broker, prefix: str, speed: int | None = SPEED, **strategy: Any
) -> tuple[Path, list[Row]]:
    """A pipeline of the replay of the ticks file at ``speed`` (None: unpaced) to a fill per
    tick; the file's good rows."""
    rows = _write_ticks(tmp_path / "ticks.csv")
    document = pipeline_config(
        bootstrap=broker.bootstrap,
        prefix=prefix,
        db_path=tmp_path / "book.sqlite",
        strategy=strategy or {"name": "buy_every_tick", "id": "every"},
        executor={"name": "paper", "params": {"fill_at": "last"}},
    )
    document["feed"] = {
        "name": "replay",
        "params": {
            "path": str(tmp_path / "ticks.csv"),
            "format": "custom",
            "columns": {"instrument": "symbol", "ts": "ts", "last_price": "price"},
        },
    }
    if speed is not None:
        document["feed"]["params"]["speed"] = speed
    return write_config(tmp_path / "pipeline.toml", document), rows


def _published(broker: Broker, prefix: str, at_least: int) -> list[Any]:
    """The market topic's records, by partition in offset order."""
    records = asyncio.run(read_topic(broker.bootstrap, f"{prefix}market", at_least))
    return sorted(records, key=lambda record: (record.partition, record.offset))


def _ticks(records: list[Any]) -> list[MarketTick]:
    ticks = [CODEC.decode(record.value) for record in records]
    assert all(isinstance(tick, MarketTick) for tick in ticks)
    return ticks  # type: ignore[return-value]


def _row(tick: MarketTick) -> Row:
    assert tick.last_price is not None
    return (tick.instrument, tick.ts, tick.last_price)


def _assert_in_time_order_per_instrument(ticks: list[MarketTick]) -> None:
    times: dict[str, list[datetime]] = defaultdict(list)
    for tick in ticks:
        times[tick.instrument].append(tick.ts)
    for instrument, seen in times.items():
        assert seen == sorted(seen), f"{instrument}'s ticks went back in time"


def _run_to_the_end(process: RoleProcess, timeout: float = 60.0) -> str:
    """Start a feed-only process and wait for it to end with the replay; its log."""
    process.start()
    assert process.process is not None
    assert process.process.wait(timeout=timeout) == 0, process.current_log()[-3000:]
    return process.current_log()


def _resumed_after(log: str) -> int:
    found = RESUMED.search(log)
    assert found is not None, log[-3000:]
    return int(found.group(1))


def test_a_feed_role_stopped_mid_replay_goes_on_where_it_stopped(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # At half the pace: stopped a saved position in (about a second), the replay is mid-way.
    config, rows = _config(tmp_path, broker, prefix, speed=SPEED // 2)
    feed = RoleProcess(config, ["feed"], tmp_path, "feed").start()
    wait_until(lambda: "replay_positions (1 partitions)" in feed.current_log(), 30, "the topic")
    assert asyncio.run(_first_saved_count(broker, prefix)) < len(rows)
    assert feed.terminate() == 0, feed.current_log()[-3000:]

    log = _run_to_the_end(feed)
    published_before = _resumed_after(log)
    assert 0 < published_before < len(rows)
    # The restart read the file from its start, but does not report again the bad rows the
    # first run reported: those before the position.
    left = sum(1 for line in BAD_LINES if _good_rows_before(line) < published_before)
    assert f"{left} bad row(s) before where an earlier run got to were reported" in log

    ticks = _ticks(_published(broker, prefix, len(rows)))
    assert Counter(map(_row, ticks)) == Counter(rows), "a tick missing or published twice"
    assert len({tick.event_id for tick in ticks}) == len(rows)
    _assert_in_time_order_per_instrument(ticks)
    letters = asyncio.run(read_topic(broker.bootstrap, f"{prefix}dead_letters", 3, timeout=3))
    reported = Counter(read_headers(record.headers)["tradeloom-location"] for record in letters)
    for line in BAD_LINES:
        # Once; twice only for a bad row right after the position, which the stopped run
        # may have met taking the next event (a paced replay takes it before it waits).
        allowed = {1, 2} if _good_rows_before(line) == published_before else {1}
        assert reported[f"line {line}"] in allowed, (line, published_before, reported)

    # The replay is all published: a third run publishes nothing. Unpaced now: the pace is no
    # part of what a position belongs to (and the run from the start below takes no time).
    _config(tmp_path, broker, prefix, speed=None)
    log = _run_to_the_end(feed)
    assert _resumed_after(log) == len(rows)
    assert f"it has no event after the {len(rows)} an earlier run published" in log
    assert len(_published(broker, prefix, len(rows))) == len(rows)

    # Asked to, it publishes the replay again from its first event, as new events.
    feed.extra_args = ["--replay-from-start"]
    log = _run_to_the_end(feed)
    assert "publishing from the first event (--replay-from-start)" in log
    again = _ticks(_published(broker, prefix, 2 * len(rows)))
    assert Counter(map(_row, again)) == Counter(rows + rows)
    assert len({tick.event_id for tick in again}) == 2 * len(rows)


async def _first_saved_count(broker: Broker, prefix: str, timeout: float = 30.0) -> int:
    """Wait for the feed role to save a position past the replay's first event; its count."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        partition = TopicPartition(f"{prefix}replay_positions", 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=20)).values():
                for record in records:
                    published = decode_position(record.value.decode(), "the test").published
                    if published > 0:
                        return published
        raise AssertionError("no position past the first event was saved")
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    "kill_after",
    [
        pytest.param("the first fill", id="at-the-first-fill"),  # most likely before a save
        pytest.param("a saved position", id="after-a-saved-position"),
    ],
)
def test_a_killed_feed_role_publishes_again_only_what_a_consumer_skips(
    broker: Broker, prefix: str, tmp_path: Path, kill_after: str
) -> None:
    # Slower than the other tests, so that a kill one saved position in (about a second) comes
    # well before the replay's end however slowly the consuming process keeps up.
    config, rows = _config(tmp_path, broker, prefix, speed=SPEED // 2)
    back = RoleProcess(config, ["strategy", "risk", "execution", "portfolio"], tmp_path, "back")
    feed = RoleProcess(config, ["feed"], tmp_path, "feed")
    with running(back):
        feed.start()
        if kill_after == "the first fill":
            wait_until(
                lambda: len(journal(tmp_path / "book.sqlite")) >= 1,
                30,
                "the first fill",
                interval=0.01,
            )
        else:
            wait_until(lambda: "replay_positions (1 partitions)" in feed.current_log(), 30, "topic")
            assert asyncio.run(_first_saved_count(broker, prefix)) < len(rows)
        feed.kill()
        killed_with = len(
            asyncio.run(read_topic(broker.bootstrap, f"{prefix}market", len(rows), timeout=3))
        )
        assert 0 < killed_with < len(rows)
        log = _run_to_the_end(feed)
        published_before = _resumed_after(log)
        assert published_before <= killed_with
        if kill_after == "a saved position":
            assert published_before > 0
        wait_until(
            lambda: len(journal(tmp_path / "book.sqlite")) >= len(rows), 30, "a fill per tick"
        )
        asyncio.run(asyncio.sleep(1.0))  # a repeat traded again would be journaled by now
        assert back.terminate() == 0, back.current_log()[-3000:]

    ticks = _ticks(_published(broker, prefix, len(rows)))
    by_id: dict[Any, set[Row]] = defaultdict(set)
    for tick in ticks:
        by_id[tick.event_id].add(_row(tick))
    assert all(len(contents) == 1 for contents in by_id.values()), "one id, two ticks"
    assert sorted(next(iter(contents)) for contents in by_id.values()) == sorted(rows)
    repeats = len(ticks) - len(rows)
    assert 0 <= repeats < len(rows) - published_before  # only what came after a save

    fills = journal(tmp_path / "book.sqlite")
    assert Counter(fill.instrument for fill in fills) == Counter({s: ROUNDS for s in SYMBOLS})
    assert len({fill.order_id for fill in fills}) == len(rows)
    if repeats:
        assert re.search(r"\b[1-9]\d* duplicates skipped", back.log()), back.log()[-3000:]


def test_an_unreadable_saved_position_stops_the_feed_with_the_way_out(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    config, _ = _config(tmp_path, broker, prefix)
    settings = load_settings(config)
    assert settings.feed is not None
    key = feed_key(ReplayFeed(**settings.feed.params), settings.feed.model_dump())
    asyncio.run(_create_topic(broker, f"{prefix}replay_positions"))
    asyncio.run(
        produce(broker.bootstrap, f"{prefix}replay_positions", [(key.encode(), b"{not json")])
    )
    feed = RoleProcess(config, ["feed"], tmp_path, "feed").start()
    assert feed.process is not None
    assert feed.process.wait(timeout=60) == 1
    log = feed.current_log()
    assert "the saved position of this replay cannot be read" in log, log[-3000:]
    assert "run with --replay-from-start to publish the replay from its first event" in log
    assert asyncio.run(read_topic(broker.bootstrap, f"{prefix}market", 1, timeout=2)) == []

    again = RoleProcess(config, ["feed"], tmp_path, "again", ["--replay-from-start"])
    assert "publishing from the first event" in _run_to_the_end(again)


def test_replaying_from_the_start_on_a_new_deployment_keeps_its_position(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    config, rows = _config(tmp_path, broker, prefix)
    fresh = RoleProcess(config, ["feed"], tmp_path, "fresh", ["--replay-from-start"])
    log = _run_to_the_end(fresh)
    assert f"created topic {prefix}replay_positions (1 partitions)" in log
    assert _resumed_after(_run_to_the_end(RoleProcess(config, ["feed"], tmp_path, "next"))) == len(
        rows
    )


async def _create_topic(broker: Broker, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


def test_one_process_of_every_role_restarted_mid_replay_trades_each_tick_once(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    """`--role all` on a broker: the restart carries on from the stored books and from the
    replay's position, without the warning that a replay trades again on top of the books."""
    config, rows = _config(tmp_path, broker, prefix)
    db = tmp_path / "book.sqlite"
    every = RoleProcess(config, ["all"], tmp_path, "every")
    with running(every):
        wait_until(lambda: len(journal(db)) >= 200, 30, "200 fills")
        assert every.terminate() == 0, every.current_log()[-3000:]
        stopped_with = len(journal(db))
        assert stopped_with < len(rows)
        every.start()
        every.wait_ready()
        assert 0 < _resumed_after(every.current_log()) < len(rows)
        wait_until(lambda: len(journal(db)) >= len(rows), 30, "a fill per tick")
        asyncio.run(asyncio.sleep(1.0))  # a tick traded twice would be journaled by now
        log = every.current_log()
        assert every.terminate() == 0, log[-3000:]
    assert "trades those events again" not in every.log()
    fills = journal(db)
    assert Counter(fill.instrument for fill in fills) == Counter({s: ROUNDS for s in SYMBOLS})
    assert len({fill.order_id for fill in fills}) == len(rows)
