"""The stock health checks, driven with a controllable clock (no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tradeloom.errors import ConfigError
from tradeloom.events import HealthReport, Severity
from tradeloom.plugins import PluginManager
from tradeloom.runtime.status import PipelineStatus
from tradeloom.settings import load_settings
from tradeloom_health.checks import (
    ConsumerLag,
    EventLoopRunning,
    MarketDataFreshness,
    PersistenceErrors,
    ReconnectionExhausted,
)
from tradeloom_health.monitor import run_checks

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


def one(found: HealthReport | list[HealthReport] | tuple[HealthReport, ...]) -> HealthReport:
    reports = [found] if isinstance(found, HealthReport) else list(found)
    assert len(reports) == 1, reports
    return reports[0]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def status(clock: ManualClock) -> PipelineStatus:
    return PipelineStatus(started_at=clock.now())


# -- market data freshness -----------------------------------------------------------------


def test_freshness_is_info_in_grace_then_critical_without_data(
    clock: ManualClock, status: PipelineStatus
) -> None:
    check = MarketDataFreshness(grace_period_seconds=60, max_tick_age_seconds=10)

    report = one(check.check(status, clock.advance(59.5)))
    assert report.severity is Severity.INFO
    assert report.message.startswith("in startup grace period")
    assert report.check == "market_data_freshness" and report.stage == "feed"

    report = one(check.check(status, clock.advance(0.5)))  # exactly at the end of the grace
    assert report.severity is Severity.CRITICAL
    assert report.message.startswith("no recent market data")
    assert "60.0 s since start" in report.message


def test_first_tick_ends_the_grace_period(clock: ManualClock, status: PipelineStatus) -> None:
    check = MarketDataFreshness(grace_period_seconds=300, max_tick_age_seconds=5)
    status.last_market_wall_time = clock.advance(1)

    report = one(check.check(status, clock.advance(2)))
    assert report.severity is Severity.INFO
    assert "fresh" in report.message and report.age_seconds == pytest.approx(2)

    # Still well inside the 300 s grace, but the grace ended with the first tick.
    report = one(check.check(status, clock.advance(4)))
    assert report.severity is Severity.CRITICAL
    assert report.message.startswith("no recent market data: last tick 6.0 s ago")
    assert report.age_seconds == pytest.approx(6)

    status.last_market_wall_time = clock.advance(1)  # data flows again
    assert one(check.check(status, clock.now())).severity is Severity.INFO


def test_stale_data_says_when_a_stage_or_the_persistence_may_be_the_cause(
    clock: ManualClock, status: PipelineStatus
) -> None:
    # Its age counts from the last event handled: a blocked loop or a hanging write shows as
    # stale data, which pointed the operator at the feed alone.
    check = MarketDataFreshness(grace_period_seconds=0, max_tick_age_seconds=5)
    status.last_market_wall_time = status.loop_ran_at = clock.now()
    status.persistence_in_flight["journaling fills"] = clock.now()
    clock.advance(6)
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.CRITICAL
    assert report.message == (
        "no recent market data: last tick 6.0 s ago (max_tick_age_seconds 5); not the feed, "
        "maybe: the event loop has not run for 6.0 s (a stage blocks it); journaling fills "
        "has not returned for 6.0 s"
    )
    status.loop_ran_at = clock.now()
    status.persistence_in_flight.clear()
    report = one(check.check(status, clock.now()))
    assert report.message == "no recent market data: last tick 6.0 s ago (max_tick_age_seconds 5)"


def test_freshness_before_start_and_with_clock_behind_data(clock: ManualClock) -> None:
    check = MarketDataFreshness()
    report = one(check.check(PipelineStatus(), clock.now()))
    assert report.severity is Severity.INFO and "not started" in report.message

    status = PipelineStatus(started_at=T0, last_market_wall_time=T0 + timedelta(seconds=3))
    report = one(check.check(status, T0))  # the check's clock lags the recorded time
    assert report.severity is Severity.INFO and report.age_seconds == 0


def test_zero_grace_is_critical_at_once(clock: ManualClock, status: PipelineStatus) -> None:
    check = MarketDataFreshness(grace_period_seconds=0, max_tick_age_seconds=1)
    assert one(check.check(status, clock.now())).severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"grace_period_seconds": -1}, "grace_period_seconds must not be negative"),
        ({"max_tick_age_seconds": 0}, "max_tick_age_seconds must be greater than zero"),
        ({"max_tick_age_seconds": "soon"}, "max_tick_age_seconds"),
        ({"grace_seconds": 5}, "unknown parameter"),
    ],
)
def test_freshness_bad_parameters(params: dict[str, object], problem: str) -> None:
    manager = PluginManager().load()
    with pytest.raises(ConfigError, match=problem) as caught:
        manager.create("health_check", "market_data_freshness", params)
    assert "market_data_freshness" in str(caught.value)


@pytest.mark.parametrize(
    ("check", "parameter"),
    [
        ("market_data_freshness", "grace_period_seconds"),
        ("market_data_freshness", "max_tick_age_seconds"),
        ("persistence_errors", "max_write_seconds"),
        ("event_loop", "max_block_seconds"),
    ],
)
def test_a_threshold_of_nan_is_refused(check: str, parameter: str) -> None:
    # Every comparison with NaN is false: such a check could never report a problem.
    manager = PluginManager().load()
    with pytest.raises(ConfigError, match=f"{parameter} must be a number of seconds, got NaN"):
        manager.create("health_check", check, {parameter: float("nan")})


def test_thresholds_come_from_toml_and_environment(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "tradeloom.toml"
    config.write_text(
        "[[health.checks]]\n"
        'name = "market_data_freshness"\n'
        "params = { grace_period_seconds = 120, max_tick_age_seconds = 2.5 }\n"
    )
    manager = PluginManager().load()
    entry = load_settings(config).health.checks[0]
    check = manager.create("health_check", entry.name, entry.params)
    assert (check.grace_period_seconds, check.max_tick_age_seconds) == (120, 2.5)

    monkeypatch.setenv(
        "TRADELOOM_HEALTH__CHECKS",
        '[{"name": "market_data_freshness", "params": {"grace_period_seconds": 7}}]',
    )
    entry = load_settings(config).health.checks[0]
    check = manager.create("health_check", entry.name, entry.params)
    status = PipelineStatus(started_at=clock.now())
    assert one(check.check(status, clock.advance(6.9))).severity is Severity.INFO
    assert one(check.check(status, clock.advance(0.1))).severity is Severity.CRITICAL


# -- consumer lag ----------------------------------------------------------------------------


def test_consumer_lag_levels(clock: ManualClock, status: PipelineStatus) -> None:
    check = ConsumerLag(warning_lag=10, critical_lag=100)
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.INFO and "no consumer lag" in report.message

    status.consumer_lag.update({"risk/signals": 9, "strategy/market": 10, "portfolio/fills": 100})
    reports = {r.message.split(":")[0]: r for r in check.check(status, clock.now())}
    assert reports["risk/signals"].severity is Severity.INFO
    assert reports["strategy/market"].severity is Severity.WARNING
    assert reports["portfolio/fills"].severity is Severity.CRITICAL
    assert "100 messages behind" in reports["portfolio/fills"].message


def test_consumer_lag_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match=r"warning_lag \(50\) must not exceed critical_lag"):
        ConsumerLag(warning_lag=50, critical_lag=5)


# -- persistence and reconnection ------------------------------------------------------------


def test_persistence_errors(clock: ManualClock, status: PipelineStatus) -> None:
    check = PersistenceErrors()
    assert one(check.check(status, clock.now())).severity is Severity.INFO

    status.persistence_errors = 2
    status.last_persistence_error = "saving snapshots: OperationalError: disk I/O error"
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.CRITICAL
    assert "disk I/O error" in report.message and "2 failure(s)" in report.message

    status.last_persistence_error = None  # the next checkpoint saved everything
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.INFO and "after 2 earlier failure(s)" in report.message


def test_a_save_that_does_not_return_is_critical(
    clock: ManualClock, status: PipelineStatus
) -> None:
    # A back end that hangs fails nothing: "no persistence errors" while nothing was saved.
    check = PersistenceErrors(max_write_seconds=60)
    status.persistence_in_flight["journaling fills"] = clock.now()
    clock.advance(60)
    assert one(check.check(status, clock.now())).severity is Severity.INFO
    clock.advance(28)
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.CRITICAL
    assert report.message == (
        "journaling fills has not returned for 88.0 s (max_write_seconds 60): "
        "is the back end hanging?"
    )
    del status.persistence_in_flight["journaling fills"]
    assert one(check.check(status, clock.now())).message == "no persistence errors"


def test_an_event_loop_that_does_not_run_is_critical(
    clock: ManualClock, status: PipelineStatus
) -> None:
    check = EventLoopRunning(max_block_seconds=10)
    assert one(check.check(status, clock.now())).message == "not running"
    status.loop_ran_at = clock.now()
    clock.advance(10)
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.INFO and report.message == (
        "the event loop runs (last 10.0 s ago)"
    )
    clock.advance(32.5)
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.CRITICAL
    assert report.message == (
        "the event loop has not run for 42.5 s (max_block_seconds 10): a stage is blocking it"
    )
    assert report.stage == "pipeline" and report.age_seconds == 42.5
    status.stopped_at = clock.now()
    assert one(check.check(status, clock.now())).message == "stopped"


def test_reconnection_exhausted(clock: ManualClock, status: PipelineStatus) -> None:
    check = ReconnectionExhausted()
    assert one(check.check(status, clock.now())).severity is Severity.INFO
    status.reconnecting["redpanda transport"] = "broker unreachable since 12:00:00: refused"
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.WARNING
    assert report.message == (
        "reconnecting: redpanda transport: broker unreachable since 12:00:00: refused"
    )
    status.reconnect_exhausted = "kite: gave up after 10 reconnection attempts"
    report = one(check.check(status, clock.now()))
    assert report.severity is Severity.CRITICAL
    assert report.message.endswith("gave up after 10 reconnection attempts")


def test_a_failing_check_becomes_a_critical_report(clock: ManualClock) -> None:
    class Broken(PersistenceErrors):
        def check(self, status: PipelineStatus, now: datetime) -> HealthReport:
            raise KeyError("boom")

    reports = run_checks(
        [("broken", Broken()), ("reconnection", ReconnectionExhausted())],
        PipelineStatus(started_at=T0),
        clock.now(),
    )
    assert [r.severity for r in reports] == [Severity.CRITICAL, Severity.INFO]
    assert reports[0].check == "broken" and "KeyError" in reports[0].message


def test_the_plugin_registers_every_stock_check() -> None:
    names = PluginManager().load().registrations()["health_check"]
    assert {
        "market_data_freshness",
        "consumer_lag",
        "persistence_errors",
        "reconnection",
        "event_loop",
    } <= set(names)
    assert {names[n].plugin for n in ("consumer_lag", "reconnection")} == {"health"}


def test_a_pipeline_gives_its_checks_the_configured_id_generator() -> None:
    from uuid import UUID

    import tradeloom
    from tradeloom import hookimpl

    class Counting:
        def __init__(self) -> None:
            self.count = 0

        def new_id(self) -> UUID:
            self.count += 1
            return UUID(int=(7 << 76) | self.count)

    class CountingIds:
        @hookimpl
        def tradeloom_register_id_generators(self):  # type: ignore[no-untyped-def]
            return {"counting": Counting}

    settings = tradeloom.make_settings(
        {
            "pipeline": {"id_generator": "counting"},
            "strategies": [{"name": "sma_cross"}],
            "health": {"checks": [{"name": "market_data_freshness"}]},
        }
    )
    pipeline = tradeloom.Pipeline(settings, events=[], plugins=[CountingIds()])
    first, second = pipeline.health(), pipeline.health()
    assert [report.event_id.int & 0xFFFF for report in first + second] == [1, 2]
    assert pipeline.ids.count == 2  # type: ignore[attr-defined]
    # a check built outside a pipeline mints UUIDv7s
    check = PluginManager().load().create("health_check", "market_data_freshness")
    assert check.check(PipelineStatus(), datetime.now(UTC)).event_id.version == 7
