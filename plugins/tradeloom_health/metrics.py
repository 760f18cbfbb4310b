"""Prometheus metrics of one pipeline process.

Counters (events in/out per stage, errors, rejections by validator, dead letters, ...) are not
counted twice: they are read from :class:`~tradeloom.runtime.status.PipelineStatus` when
``/metrics`` is scraped. Only what needs per-event timing is recorded as events flow: the
processing time of each stage (through ``PipelineStatus.stage_observer``) and tick-to-fill
latency. Recording never raises: a value that cannot be recorded is counted in
``tradeloom_metrics_recording_errors_total`` instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tradeloom.events import HealthReport, Severity
from tradeloom.runtime.status import PipelineStatus
from tradeloom.runtime.transport import Topics

PROCESSING_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    float("inf"),
)
TICK_TO_FILL_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    float("inf"),
)
SEVERITY_VALUE = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
MAX_SIGNALS_REMEMBERED = 10_000
_INF = float("inf")

HealthSource = Callable[[], Sequence[HealthReport]]


class PipelineMetrics:
    """The metrics of one pipeline process, in a registry of their own.

    ``observe`` is meant for ``PipelineStatus.stage_observer``. ``fill_stage`` is the stage
    whose handling of a fill records tick-to-fill latency (one stage, so that a fill seen by
    several stages counts once). ``market_stage``, when given, is a stage whose handling of a
    market event updates the status's last-market-data times: set it in a process that does
    not run the feed itself, so that freshness checks see the data arriving.
    """

    def __init__(
        self,
        status: PipelineStatus,
        *,
        health: HealthSource | None = None,
        fill_stage: str | None = "portfolio",
        market_stage: str | None = None,
        registry: CollectorRegistry | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.status = status
        self.fill_stage = fill_stage
        self.market_stage = market_stage
        self.registry = registry if registry is not None else CollectorRegistry()
        self._wall_clock = wall_clock or _utcnow
        self.processing = Histogram(
            "tradeloom_stage_processing_seconds",
            "Time a stage took to handle one event, by stage.",
            ["stage"],
            buckets=PROCESSING_BUCKETS,
            registry=self.registry,
        )
        self.tick_to_fill = Histogram(
            "tradeloom_tick_to_fill_seconds",
            "From the strategy's decision on a market event (the signal's time) to the fill.",
            buckets=TICK_TO_FILL_BUCKETS,
            registry=self.registry,
        )
        self.recording_errors = Counter(
            "tradeloom_metrics_recording_errors",
            "Events whose metrics could not be recorded (the events themselves were handled).",
            registry=self.registry,
        )
        self._processing_by_stage: dict[str, Any] = {}
        self._signal_times: OrderedDict[Any, datetime] = OrderedDict()
        self._fill_times: OrderedDict[Any, datetime] = OrderedDict()
        self._fills_counted: OrderedDict[Any, None] = OrderedDict()
        self.registry.register(StatusCollector(status, health))

    def observe(self, stage: str, topic: str, event: Any, seconds: float) -> None:
        """Record that ``stage`` handled ``event`` of ``topic`` in ``seconds``. Never raises."""
        try:
            child = self._processing_by_stage.get(stage)
            if child is None:
                child = self._processing_by_stage[stage] = self.processing.labels(stage=stage)
            if not 0.0 <= seconds < _INF:  # a NaN would poison the histogram's sum for good
                raise ValueError(f"not a duration: {seconds!r}")
            child.observe(seconds)
            if topic == Topics.MARKET:
                if stage == self.market_stage:
                    self.market_seen(event)
            elif topic == Topics.SIGNALS:
                if getattr(event, "type", None) == "signal":  # not a Cancel on the same topic
                    self.signal_seen(event)
            elif topic == Topics.FILLS and stage == self.fill_stage:
                self.fill_seen(event)
        except Exception:
            self.recording_errors.inc()

    def market_seen(self, event: Any) -> None:
        """A market event reached this process (which does not run the feed)."""
        status = self.status
        status.last_market_time[str(event.instrument)] = event.ts
        status.last_market_wall_time = self._wall_clock()

    # Stages report an event after handling it, and on an in-process transport the fill of a
    # market order is handled inside the handling of its signal: so a fill may be seen before
    # its signal. Whichever comes first waits (bounded) for the other.

    def signal_seen(self, signal: Any) -> None:
        """Remember when a signal was decided, until its fill arrives."""
        filled = self._fill_times.pop(signal.event_id, None)
        if filled is not None:
            self._tick_to_fill(signal.ts, filled)
        else:
            _remember(self._signal_times, signal.event_id, signal.ts)

    def fill_seen(self, fill: Any) -> None:
        decided = self._signal_times.pop(fill.signal_id, None)
        if decided is not None:
            self._tick_to_fill(decided, fill.ts)
        elif fill.signal_id not in self._fills_counted:
            _remember(self._fill_times, fill.signal_id, fill.ts)
        _remember(self._fills_counted, fill.signal_id, None)

    def _tick_to_fill(self, decided: datetime, filled: datetime) -> None:
        self.tick_to_fill.observe(max(0.0, (filled - decided).total_seconds()))

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class StatusCollector(Collector):
    """Reads the pipeline's status at scrape time, so the event path counts nothing twice."""

    def __init__(self, status: PipelineStatus, health: HealthSource | None = None) -> None:
        self.status = status
        self.health = health

    def collect(self) -> Iterator[Metric]:
        status = self.status
        # Copies: the pipeline's thread may add entries while a scrape runs.
        stages = sorted(dict(status.stages).items())
        events_in = CounterMetricFamily(
            "tradeloom_stage_events_in", "Events delivered to a stage.", labels=["stage"]
        )
        events_out = CounterMetricFamily(
            "tradeloom_stage_events_out", "Events a stage published.", labels=["stage"]
        )
        errors = CounterMetricFamily(
            "tradeloom_stage_errors", "Errors raised while handling events.", labels=["stage"]
        )
        for name, counters in stages:
            events_in.add_metric([name], counters.events_in)
            events_out.add_metric([name], counters.events_out)
            errors.add_metric([name], counters.errors)
        yield events_in
        yield events_out
        yield errors

        rejections = CounterMetricFamily(
            "tradeloom_rejections",
            "Signals refused, by the validator (or 'pending', or the executor) that refused.",
            labels=["validator"],
        )
        for validator, count in sorted(dict(status.rejections).items()):
            rejections.add_metric([validator], count)
        yield rejections
        yield CounterMetricFamily(
            "tradeloom_dead_letters",
            "Inputs that could not be used (undecodable, invalid) and were set aside.",
            value=status.dead_letters,
        )
        yield CounterMetricFamily(
            "tradeloom_duplicates_ignored",
            "Redelivered events recognised by their id and ignored.",
            value=status.duplicates_ignored,
        )
        yield CounterMetricFamily(
            "tradeloom_persistence_errors",
            "Failed attempts to journal fills or save snapshots.",
            value=status.persistence_errors,
        )
        yield GaugeMetricFamily(
            "tradeloom_persistence_failing",
            "1 while the latest attempt to save state failed.",
            value=1 if status.last_persistence_error else 0,
        )
        yield GaugeMetricFamily(
            "tradeloom_reconnect_exhausted",
            "1 once a feed or transport gave up reconnecting.",
            value=1 if status.reconnect_exhausted else 0,
        )

        last_tick = GaugeMetricFamily(
            "tradeloom_last_tick_timestamp_seconds",
            "Timestamp of the latest market event per instrument (the data's own time).",
            labels=["instrument"],
        )
        for instrument, ts in sorted(dict(status.last_market_time).items()):
            last_tick.add_metric([str(instrument)], ts.timestamp())
        yield last_tick
        if status.last_market_wall_time is not None:
            yield GaugeMetricFamily(
                "tradeloom_last_market_data_received_timestamp_seconds",
                "Wall-clock time this process last received market data.",
                value=status.last_market_wall_time.timestamp(),
            )
        if status.started_at is not None:
            yield GaugeMetricFamily(
                "tradeloom_pipeline_start_timestamp_seconds",
                "Wall-clock time the pipeline started.",
                value=status.started_at.timestamp(),
            )

        lag = GaugeMetricFamily(
            "tradeloom_consumer_lag",
            "Messages not yet consumed, by '<role>/<topic>' (broker transports only).",
            labels=["source"],
        )
        for source, behind in sorted(dict(status.consumer_lag).items()):
            lag.add_metric([str(source)], behind)
        yield lag

        if self.health is not None:
            yield self._health_metric()

    def _health_metric(self) -> GaugeMetricFamily:
        worst: dict[tuple[str, str], int] = {}
        assert self.health is not None
        for report in self.health():
            key = (report.check, report.stage)
            worst[key] = max(worst.get(key, 0), SEVERITY_VALUE[report.severity])
        family = GaugeMetricFamily(
            "tradeloom_health_severity",
            "Worst severity a health check reports: 0 info, 1 warning, 2 critical.",
            labels=["check", "stage"],
        )
        for (check, stage), value in sorted(worst.items()):
            family.add_metric([check, stage], value)
        return family


def _remember(store: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    store[key] = value
    if len(store) > MAX_SIGNALS_REMEMBERED:
        store.popitem(last=False)


def _utcnow() -> datetime:
    return datetime.now(UTC)
