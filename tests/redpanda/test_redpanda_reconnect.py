"""Broker outages: the feed and the transport reconnect per ``[reconnect]`` (re-creating topics
a restarted broker lost), or give up after ``max_attempts`` and the pipeline drains, saves and
stops with an error. Also: a live feed waiting for input stops on request, and a process that
runs only a finite feed ends with it."""

from __future__ import annotations

import asyncio
import logging
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from redpanda_support import (
    FAST,
    RoleProcess,
    journal,
    pipeline_config,
    produce,
    read_topic,
    snapshots,
    synthetic_ts,
    tick_json,
    wait_until,
    wall_ts,
    write_config,
)
from redpanda_test_plugin import BuyEveryTick
from tansu_broker import Broker

from tradeloom.events import MarketTick
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.runtime.results import RunResult
from tradeloom.settings import Settings
from tradeloom_decimal.codec import DecimalJsonCodec
from tradeloom_health.readiness import not_ready_because

GUARD_SECONDS = 60.0


def _settings(broker: Broker, prefix: str, reconnect: dict[str, float]) -> Settings:
    connection = {"bootstrap_servers": broker.bootstrap, **FAST}
    return Settings(
        pipeline={"transport": "redpanda"},
        transport={**connection, "topic_prefix": prefix, "group_prefix": prefix},
        feed={
            "name": "redpanda",
            "params": {
                **connection,
                "topic": f"{prefix}ticks",
                "group_id": f"{prefix}feed",
                "format": "json",
            },
        },
        executor={"name": "paper", "params": {"fill_at": "last"}},
        reconnect=reconnect,
        health={"checks": [{"name": "reconnection"}]},
    )


async def _ticks_in(broker: Broker, topic: str, symbols: list[str]) -> None:
    await produce(
        broker.bootstrap,
        topic,
        [(s.encode(), tick_json(s, Decimal("50.5"), wall_ts())) for s in symbols],
    )


def test_feed_and_transport_reconnect_after_the_broker_restarts(
    private_broker: Broker, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tradeloom")
    reconnect = {"max_attempts": 30, "base_delay_seconds": 0.1, "max_delay_seconds": 0.3}
    pipeline = Pipeline(
        _settings(private_broker, prefix, reconnect),
        mode="live",
        strategies={"every": BuyEveryTick()},
    )

    async def scenario() -> None:
        with anyio.fail_after(GUARD_SECONDS):
            await steps()

    async def steps() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            await _ticks_in(private_broker, f"{prefix}ticks", ["AA", "BB"] * 5)
            while len(pipeline.result.fills) < 10:
                await anyio.sleep(0.05)
            # Lag is measured about once a second: on a loaded machine the fills may come
            # before the transport's roles' first figures.
            while "execution/market" not in pipeline.status.consumer_lag:
                await anyio.sleep(0.05)
            lag_before.update(pipeline.status.consumer_lag)
            private_broker.kill()
            # The watchdogs notice and start reconnecting, and an attempt fails (in about a
            # second; waited for rather than slept on, so that a loaded machine does not fail
            # the test).
            while set(pipeline.status.reconnecting) != {feed, "redpanda transport"} or not any(
                "reconnection attempt 1/30 failed" in r.getMessage() for r in caplog.records
            ):
                await anyio.sleep(0.05)
            # While the broker is away, the health checks see it (the feed's link and the
            # transport's: the feed's was not shown, and a feed-only process looked healthy).
            reconnecting.update(pipeline.status.reconnecting)
            health.extend(pipeline.health())
            not_ready.extend(not_ready_because(pipeline.status, health))
            # The lag is unknown while the broker is out of reach (it said "0 behind"): the
            # feed's, and the transport's roles' too.
            with anyio.fail_after(10):
                while pipeline.status.consumer_lag:
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(private_broker.start)  # empty: topics are gone
            # Both links re-create their topics; then the stream goes on.
            while not (
                pipeline.transport.link.reconnections  # type: ignore[attr-defined]
                and pipeline.feed._link.reconnections  # type: ignore[union-attr]
            ):
                await anyio.sleep(0.05)
            await _ticks_in(private_broker, f"{prefix}ticks", ["AA", "BB"] * 5)
            while len(pipeline.result.fills) < 20:
                await anyio.sleep(0.05)
            not_ready_again.extend(not_ready_because(pipeline.status, pipeline.health()))
            pipeline.stop()

    feed = f"redpanda feed ({prefix}ticks)"
    not_ready: list[str] = []
    not_ready_again: list[str] = []
    lag_before: dict[str, int] = {}
    reconnecting: dict[str, str] = {}
    health: list[Any] = []
    anyio.run(scenario)
    assert len(pipeline.result.fills) == 20
    assert len({fill.order_id for fill in pipeline.result.fills}) == 20
    assert pipeline.status.reconnect_exhausted is None
    assert f"feed/{prefix}ticks" in lag_before
    assert "execution/market" in lag_before  # the transport's roles had figures too
    assert sorted(reconnecting) == [feed, "redpanda transport"]
    assert all(why.startswith("broker unreachable since ") for why in reconnecting.values())
    assert pipeline.status.reconnecting == {}  # back
    [report] = [r for r in health if r.check == "reconnection"]
    assert report.severity == "warning" and report.message.startswith(
        f"reconnecting: {feed}: broker unreachable since "
    )
    assert "; redpanda transport: broker unreachable since " in report.message
    # /ready says the process is not ready while the broker is away, and ready once back.
    assert [reason.split(": broker unreachable since ")[0] for reason in not_ready] == [
        f"reconnecting: {feed}",
        "reconnecting: redpanda transport",
    ]
    assert not_ready_again == []
    messages = [record.getMessage() for record in caplog.records]
    assert any("unreachable" in m and "reconnecting (at most 30 attempts)" in m for m in messages)
    assert any("reconnection attempt 1/30 failed" in m for m in messages)
    assert any("redpanda feed" in m and "reconnected after" in m for m in messages)
    assert any("redpanda transport" in m and "reconnected after" in m for m in messages)


def test_a_pipeline_gives_up_after_max_attempts_and_stops_cleanly(
    private_broker: Broker, prefix: str, tmp_path: Path
) -> None:
    db = tmp_path / "book.sqlite"
    document = pipeline_config(
        bootstrap=private_broker.bootstrap,
        prefix=prefix,
        db_path=db,
        strategy={"name": "buy_every_tick", "id": "every"},
        executor={"name": "paper", "params": {"fill_at": "last"}},
        reconnect={"max_attempts": 3, "base_delay_seconds": 0.1, "max_delay_seconds": 0.2},
    )
    config = write_config(tmp_path / "pipeline.toml", document)
    process = RoleProcess(config, ["all"], tmp_path, "all").start()
    try:
        process.wait_ready()
        asyncio.run(_ticks_in(private_broker, f"{prefix}ticks", ["AA", "BB", "CC"]))
        wait_until(lambda: len(journal(db)) == 3, 30, "three fills journaled")
        private_broker.kill()
        assert process.process is not None
        code = process.process.wait(timeout=GUARD_SECONDS)
    finally:
        process.kill()
    log = process.current_log()
    assert code == 1, log[-3000:]
    assert re.search(
        r"ERROR tradeloom.pipeline: redpanda (feed|transport).*: gave up after 3 reconnection "
        r"attempts: .*; draining, then stopping",
        log,
    ), log[-3000:]
    assert re.search(r"tradeloom: error: redpanda (feed|transport).*: gave up after 3", log)
    assert "Task exception was never retrieved" not in log
    # The drain still saved the book: three fills, and a snapshot that includes them.
    assert len(journal(db)) == 3
    assert snapshots(db)["every"].fills_applied == 3


def test_stop_ends_a_live_feed_that_is_waiting_for_ticks(broker: Broker, prefix: str) -> None:
    pipeline = Pipeline(
        _settings(broker, prefix, {"max_attempts": 3}),
        mode="live",
        strategies={"every": BuyEveryTick()},
    )

    async def scenario() -> None:
        with anyio.fail_after(GUARD_SECONDS):
            await steps()

    async def steps() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            while pipeline.feed is None or not getattr(pipeline.feed, "_consumer", None):
                await anyio.sleep(0.05)
            await anyio.sleep(0.3)  # the feed now waits on an empty topic
            pipeline.stop()

    anyio.run(scenario)
    assert pipeline.result.market_events == 0
    assert pipeline.status.stopped_at is not None


def test_a_process_running_only_a_finite_feed_ends_with_it(broker: Broker, prefix: str) -> None:
    codec = DecimalJsonCodec()
    from tradeloom_uuid7.generator import Uuid7Generator

    ids = Uuid7Generator()
    ticks = [
        MarketTick(event_id=ids.new_id(), ts=synthetic_ts(n), instrument="AA", last_price=n + 1)
        for n in range(25)
    ]
    settings = Settings(
        pipeline={"transport": "redpanda"},
        transport={
            "bootstrap_servers": broker.bootstrap,
            **FAST,
            "topic_prefix": prefix,
            "group_prefix": prefix,
        },
    )
    pipeline = Pipeline(settings, mode="live", roles=["feed"], events=ticks)

    async def run() -> RunResult:
        with anyio.fail_after(GUARD_SECONDS):  # a live run that waited for stop() would hang
            return await pipeline.run()

    result = anyio.run(run)
    assert result.market_events == 25
    records = asyncio.run(read_topic(broker.bootstrap, f"{prefix}market", 25))
    assert [codec.decode(record.value) for record in records] == ticks


def test_a_broker_name_that_does_not_resolve_is_said_when_giving_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tradeloom.backoff import ReconnectExhausted
    from tradeloom.settings import ReconnectSettings
    from tradeloom_redpanda.connection import BrokerLink
    from tradeloom_redpanda.options import ConnectionOptions

    # .invalid never resolves (RFC 2606): a name known only inside some container network.
    options = ConnectionOptions.from_params(
        "test",
        {
            "bootstrap_servers": "redpanda-0.invalid:9092",
            "request_timeout_ms": 1000,
            "session_timeout_ms": 900,
            "heartbeat_interval_ms": 300,
        },
    )
    settings = ReconnectSettings(max_attempts=1, base_delay_seconds=0.05, max_delay_seconds=0.1)
    link = BrokerLink("test link", options, ["t"], settings, logging.getLogger("tradeloom.t"))

    async def connect() -> None:
        try:
            await link.connect()
        finally:
            await link.close()

    with (
        caplog.at_level(logging.WARNING, logger="tradeloom"),
        pytest.raises(ReconnectExhausted) as info,
    ):
        anyio.run(connect)
    hint = "redpanda-0.invalid does not resolve to an address"
    assert any(hint in note for note in info.value.__notes__)
    assert hint in caplog.text  # said at the first failure too


def test_a_blocked_event_loop_is_not_taken_for_an_unreachable_broker(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    # A stage that blocks the loop for longer than operation_timeout_seconds while a probe
    # waits: the broker's answer sits in the socket while the deadline passes. That late
    # timeout is no outage: the probe is made again, and it answers.
    import time

    from tradeloom.settings import ReconnectSettings
    from tradeloom_redpanda.connection import BrokerLink
    from tradeloom_redpanda.options import ConnectionOptions

    options = ConnectionOptions.from_params(
        "test",
        {
            "bootstrap_servers": broker.bootstrap,
            "operation_timeout_seconds": 0.3,
            "probe_interval_seconds": 0.01,
        },
    )
    settings = ReconnectSettings(max_attempts=1, base_delay_seconds=0.05, max_delay_seconds=0.1)
    link = BrokerLink("test link", options, ["t"], settings, logging.getLogger("tradeloom.t"))

    probing = asyncio.Event()
    probe = link.probe

    async def probe_and_say() -> None:
        probing.set()
        await probe()

    link.probe = probe_and_say  # type: ignore[method-assign]

    async def blocked_now_and_then() -> None:
        await link.connect()
        watching = asyncio.create_task(link.watch())
        try:
            for _ in range(3):
                probing.clear()
                await asyncio.wait_for(probing.wait(), 10)  # a probe awaits the broker now
                time.sleep(1.0)  # a stage computing, the loop blocked
                await asyncio.sleep(0.2)  # the probe made again answers meanwhile
            await asyncio.sleep(0.3)
            assert not watching.done(), watching
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await link.close()

    with caplog.at_level(logging.DEBUG, logger="tradeloom"):
        asyncio.run(blocked_now_and_then())
    assert "unreachable" not in caplog.text
    assert link.reconnections == 0 and link.exhausted is None
    assert "a probe timed out (the event loop may have been blocked); probing again" in (
        caplog.text
    )
