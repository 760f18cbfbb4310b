"""Prometheus metrics: read from the pipeline's status, timed per stage, never failing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tradeloom_monitoring_testplugin import BuyOnce
from uuid6 import uuid7

from tradeloom import Bar, Fill, MarketTick, Pipeline, Side, Signal, hookimpl
from tradeloom.runtime.stages import StrategyError
from tradeloom.runtime.status import PipelineStatus
from tradeloom.settings import Settings
from tradeloom_health.metrics import PipelineMetrics

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def samples(metrics: PipelineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed back with prometheus-client's own parser."""
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def tick(instrument: str = "ACME", ts: datetime = T0, price: str = "101.25") -> MarketTick:
    return MarketTick(
        event_id=uuid7(),
        ts=ts,
        instrument=instrument,
        last_price=Decimal(price),
        last_quantity=Decimal("0.000001"),
        bid=Decimal("101.2"),
        ask=Decimal("101.3"),
        volume=Decimal("1E+3"),
    )


def test_counters_are_read_from_the_status() -> None:
    status = PipelineStatus(started_at=T0)
    status.stage("risk").events_in = 7
    status.stage("risk").events_out = 5
    status.stage("strategy").errors = 1
    status.rejections.update({"max_position": 2, "pending": 1})
    status.dead_letters = 3
    status.persistence_errors = 1
    status.last_persistence_error = "saving snapshots: disk full"
    status.consumer_lag["risk/signals"] = 42
    status.last_market_time["ACME"] = T0
    metrics = PipelineMetrics(status)

    found = samples(metrics)
    assert found[("tradeloom_stage_events_in_total", (("stage", "risk"),))] == 7
    assert found[("tradeloom_stage_events_out_total", (("stage", "risk"),))] == 5
    assert found[("tradeloom_stage_errors_total", (("stage", "strategy"),))] == 1
    assert found[("tradeloom_rejections_total", (("validator", "max_position"),))] == 2
    assert found[("tradeloom_rejections_total", (("validator", "pending"),))] == 1
    assert found[("tradeloom_dead_letters_total", ())] == 3
    assert found[("tradeloom_persistence_errors_total", ())] == 1
    assert found[("tradeloom_persistence_failing", ())] == 1
    assert found[("tradeloom_reconnect_exhausted", ())] == 0
    assert found[("tradeloom_consumer_lag", (("source", "risk/signals"),))] == 42
    assert found[("tradeloom_last_tick_timestamp_seconds", (("instrument", "ACME"),))] == (
        T0.timestamp()
    )
    assert found[("tradeloom_pipeline_start_timestamp_seconds", ())] == T0.timestamp()

    status.stage("risk").events_in = 8  # a later scrape sees the new value
    assert samples(metrics)[("tradeloom_stage_events_in_total", (("stage", "risk"),))] == 8


def test_observing_every_kind_of_event_and_value_never_fails() -> None:
    status = PipelineStatus(started_at=T0)
    wall = [T0 + timedelta(seconds=5)]
    metrics = PipelineMetrics(status, market_stage="strategy", wall_clock=lambda: wall[0])
    odd_instrument = 'BRK "B"\\Ä€'  # quotes, a backslash and non-ASCII in a label
    bar = Bar(
        event_id=uuid7(),
        ts=T0,
        instrument="ORCL",
        open=Decimal("1.5"),
        high=Decimal("2"),
        low=Decimal("1"),
        close=Decimal("1.75"),
        volume=Decimal(0),
        start=T0 - timedelta(days=1),
        end=T0,
    )
    for event in (tick(), tick(odd_instrument, price="1E-8"), bar):
        metrics.observe("strategy", "market", event, 0.00002)
        metrics.observe("risk", "market", event, 0.00001)
    assert metrics.recording_errors._value.get() == 0
    assert status.last_market_wall_time == wall[0]
    assert status.last_market_time[odd_instrument] == T0

    for junk in (None, {"instrument": Decimal("1")}, object(), Decimal("NaN")):
        metrics.observe("strategy", "market", junk, 0.1)
        metrics.observe("portfolio", "fills", junk, 0.1)
    metrics.observe("strategy", "market", tick(), float("nan"))
    metrics.observe("strategy", "market", tick(), -1.0)
    assert metrics.recording_errors._value.get() == 10  # counted, never raised

    found = samples(metrics)
    assert found[("tradeloom_stage_processing_seconds_count", (("stage", "strategy"),))] == 7
    assert found[("tradeloom_stage_processing_seconds_sum", (("stage", "strategy"),))] > 0
    assert found[("tradeloom_stage_processing_seconds_count", (("stage", "risk"),))] == 3
    key = ("tradeloom_last_tick_timestamp_seconds", (("instrument", odd_instrument),))
    assert found[key] == T0.timestamp()
    assert found[("tradeloom_metrics_recording_errors_total", ())] == 10


def signal_and_fill(delay: timedelta) -> tuple[Signal, Fill]:
    signal = Signal(
        event_id=uuid7(),
        ts=T0,
        strategy_id="s",
        instrument="ACME",
        side=Side.BUY,
        quantity=Decimal("2"),
    )
    fill = Fill(
        event_id=uuid7(),
        ts=T0 + delay,
        order_id=uuid7(),
        signal_id=signal.event_id,
        strategy_id="s",
        instrument="ACME",
        side=Side.BUY,
        quantity=Decimal("2"),
        price=Decimal("101.2500000001"),
        commission=Decimal("0.01"),
    )
    return signal, fill


def test_tick_to_fill_latency_from_signal_to_fill() -> None:
    metrics = PipelineMetrics(PipelineStatus(), fill_stage="portfolio")
    signal, fill = signal_and_fill(timedelta(milliseconds=250))
    metrics.observe("risk", "signals", signal, 0.0)
    metrics.observe("strategy", "fills", fill, 0.0)  # not the fill stage: not counted
    metrics.observe("portfolio", "fills", fill, 0.0)
    metrics.observe("portfolio", "fills", fill, 0.0)  # a redelivery counts once
    # In-process, a market order's fill is handled within its signal's handling, so the
    # fill may be reported first.
    signal2, fill2 = signal_and_fill(timedelta(seconds=2))
    metrics.observe("portfolio", "fills", fill2, 0.0)
    metrics.observe("risk", "signals", signal2, 0.0)
    metrics.observe("portfolio", "fills", fill2, 0.0)
    found = samples(metrics)
    assert found[("tradeloom_tick_to_fill_seconds_count", ())] == 2
    assert found[("tradeloom_tick_to_fill_seconds_sum", ())] == 2.25
    assert found[("tradeloom_tick_to_fill_seconds_bucket", (("le", "0.25"),))] == 1
    assert found[("tradeloom_tick_to_fill_seconds_bucket", (("le", "0.1"),))] == 0
    assert found[("tradeloom_tick_to_fill_seconds_bucket", (("le", "2.5"),))] == 2


class AttachMetrics:
    """A plugin that attaches PipelineMetrics when a pipeline starts, as the monitor does."""

    def __init__(self) -> None:
        self.metrics: PipelineMetrics | None = None

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Pipeline) -> None:
        self.metrics = PipelineMetrics(pipeline.status)
        pipeline.status.stage_observer = self.metrics.observe


def test_every_stage_of_a_real_run_is_timed() -> None:
    attach = AttachMetrics()
    ticks = [tick(ts=T0 + timedelta(seconds=i), price=f"{100 + i}.5") for i in range(20)]
    settings = Settings(executor={"name": "paper", "params": {"fill_at": "last"}})
    pipeline = Pipeline(settings, events=ticks, strategies={"buyer": BuyOnce()}, plugins=[attach])
    result = anyio.run(pipeline.run)
    assert len(result.fills) == 1
    assert attach.metrics is not None
    found = samples(attach.metrics)
    for stage, counters in pipeline.status.stages.items():
        assert counters.events_in > 0
        count = found[("tradeloom_stage_processing_seconds_count", (("stage", stage),))]
        assert count == counters.events_in, stage
    assert found[("tradeloom_tick_to_fill_seconds_count", ())] == 1
    assert found[("tradeloom_last_tick_timestamp_seconds", (("instrument", "ACME"),))] == (
        ticks[-1].ts.timestamp()
    )
    assert attach.metrics.recording_errors._value.get() == 0


class Explodes(BuyOnce):
    def on_tick(self, tick: MarketTick, ctx: Any) -> None:
        raise ZeroDivisionError("strategy bug")


def test_an_event_whose_handling_raises_is_still_timed() -> None:
    attach = AttachMetrics()
    pipeline = Pipeline(
        Settings(), events=[tick()], strategies={"bad": Explodes()}, plugins=[attach]
    )
    with pytest.raises(StrategyError, match="ZeroDivisionError: strategy bug"):
        anyio.run(pipeline.run)
    assert attach.metrics is not None
    found = samples(attach.metrics)
    assert found[("tradeloom_stage_processing_seconds_count", (("stage", "strategy"),))] == 1


def test_a_cancel_on_the_signals_topic_is_not_taken_for_a_signal() -> None:
    from tradeloom import Cancel

    metrics = PipelineMetrics(PipelineStatus(), fill_stage="portfolio")
    signal, fill = signal_and_fill(timedelta(milliseconds=250))
    metrics.observe("risk", "signals", signal, 0.0)
    metrics.observe("risk", "signals", Cancel(event_id=uuid7(), ts=T0, signal=signal), 0.0)
    assert list(metrics._signal_times) == [signal.event_id]  # waits for its fill, alone
    metrics.observe("portfolio", "fills", fill, 0.0)
    found = samples(metrics)
    assert found[("tradeloom_tick_to_fill_seconds_count", ())] == 1
    assert found[("tradeloom_metrics_recording_errors_total", ())] == 0
