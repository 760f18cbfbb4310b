"""The stock health checks. Each reads a :class:`~tradeloom.runtime.status.PipelineStatus` at
a given time and reports on one concern; none keeps a clock of its own, so tests drive them by
passing ``now``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from tradeloom.components import HealthCheck
from tradeloom.events import HealthReport, Severity
from tradeloom.runtime.status import PipelineStatus


def _report(
    new_id: Callable[[], UUID],
    now: datetime,
    stage: str,
    check: str,
    severity: Severity,
    message: str,
    age_seconds: float | None = None,
) -> HealthReport:
    return HealthReport(
        event_id=new_id(),
        ts=now,
        stage=stage,
        check=check,
        severity=severity,
        message=message,
        age_seconds=None if age_seconds is None else max(0.0, age_seconds),
    )


def _non_negative(name: str, value: float) -> float:
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got NaN")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return float(value)


def _positive(name: str, value: float) -> float:
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got NaN")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")
    return float(value)


class MarketDataFreshness(HealthCheck):
    """Is market data arriving?

    Info "in startup grace period" from the pipeline's start until ``grace_period_seconds``
    have passed or the first tick arrived, whichever is first. After that: info while the
    latest tick (any instrument) is at most ``max_tick_age_seconds`` old, critical
    "no recent market data" otherwise; info again once the pipeline is stopping (it takes
    no more input then). Ages are measured on the wall clock, from when the
    process received the data, not from the data's own timestamps.
    """

    name = "market_data_freshness"

    def __init__(
        self, grace_period_seconds: float = 60.0, max_tick_age_seconds: float = 30.0
    ) -> None:
        self.grace_period_seconds = _non_negative("grace_period_seconds", grace_period_seconds)
        self.max_tick_age_seconds = _positive("max_tick_age_seconds", max_tick_age_seconds)

    def check(self, status: PipelineStatus, now: datetime) -> HealthReport:
        started = status.started_at
        last = status.last_market_wall_time
        if started is None and last is None:
            return self._say(now, Severity.INFO, "pipeline has not started yet")
        if status.draining_since is not None:
            # Stopping: the input is shut on purpose, so old data is no fault of the feed.
            age = None if last is None else (now - last).total_seconds()
            return self._say(
                now,
                Severity.INFO,
                "the pipeline is stopping: market data is no longer taken in "
                + ("(none was)" if age is None else f"(last tick {max(age, 0.0):.1f} s ago)"),
                age,
            )
        if last is None:
            assert started is not None
            running = (now - started).total_seconds()
            if running < self.grace_period_seconds:
                return self._say(
                    now,
                    Severity.INFO,
                    f"in startup grace period: no market data yet, "
                    f"{self.grace_period_seconds - running:.1f} s of grace left",
                )
            return self._say(
                now,
                Severity.CRITICAL,
                f"no recent market data: none received in the {running:.1f} s since start "
                f"(grace period {self.grace_period_seconds:g} s)",
            )
        age = (now - last).total_seconds()
        if age <= self.max_tick_age_seconds:
            return self._say(
                now,
                Severity.INFO,
                f"market data is fresh: last tick {max(age, 0.0):.1f} s ago",
                age,
            )
        return self._say(
            now,
            Severity.CRITICAL,
            f"no recent market data: last tick {age:.1f} s ago "
            f"(max_tick_age_seconds {self.max_tick_age_seconds:g}){_held_up(status, now)}",
            age,
        )

    def _say(
        self, now: datetime, severity: Severity, message: str, age: float | None = None
    ) -> HealthReport:
        return _report(self.new_id, now, "feed", self.name, severity, message, age)


def _held_up(status: PipelineStatus, now: datetime) -> str:
    """What may keep market data from being taken in, rather than the feed: ``""`` or a
    clause for the freshness report (the age counts from the last event handled)."""
    reasons = []
    ran = status.loop_ran_at
    if ran is not None and status.stopped_at is None:
        blocked = (now - ran).total_seconds()
        if blocked > 1.0:
            reasons.append(f"the event loop has not run for {blocked:.1f} s (a stage blocks it)")
    for what, since in sorted(status.persistence_in_flight.items()):
        waiting = (now - since).total_seconds()
        if waiting > 1.0:
            reasons.append(f"{what} has not returned for {waiting:.1f} s")
    if not reasons:
        return ""
    return f"; not the feed, maybe: {'; '.join(reasons)}"


class ConsumerLag(HealthCheck):
    """How far the consumers of a broker transport are behind, per ``"<role>/<topic>"``.

    Warning at ``warning_lag`` messages behind, critical at ``critical_lag``. Reads
    ``PipelineStatus.consumer_lag``, which the broker transport fills (and a feed reading a
    broker topic, as ``"feed/<topic>"``); the in-process transport has no lag.
    """

    name = "consumer_lag"

    def __init__(self, warning_lag: int = 1_000, critical_lag: int = 10_000) -> None:
        if warning_lag < 0 or critical_lag < 0:
            raise ValueError("warning_lag and critical_lag must not be negative")
        if warning_lag > critical_lag:
            raise ValueError(
                f"warning_lag ({warning_lag}) must not exceed critical_lag ({critical_lag})"
            )
        self.warning_lag = warning_lag
        self.critical_lag = critical_lag

    def check(self, status: PipelineStatus, now: datetime) -> Sequence[HealthReport]:
        lags = dict(status.consumer_lag)  # a copy: a transport may update it meanwhile
        if not lags:
            return [
                _report(
                    self.new_id,
                    now,
                    "transport",
                    self.name,
                    Severity.INFO,
                    "no consumer lag reported (in-process transport, or not consuming yet)",
                )
            ]
        reports = []
        for source, lag in sorted(lags.items()):
            if lag >= self.critical_lag:
                severity = Severity.CRITICAL
                message = f"{source}: {lag} messages behind (critical_lag {self.critical_lag})"
            elif lag >= self.warning_lag:
                severity = Severity.WARNING
                message = f"{source}: {lag} messages behind (warning_lag {self.warning_lag})"
            else:
                severity = Severity.INFO
                message = f"{source}: {lag} messages behind"
            reports.append(_report(self.new_id, now, "transport", self.name, severity, message))
        return reports


class PersistenceErrors(HealthCheck):
    """Is state being saved? Critical while the latest save of fills or snapshots failed
    (portfolios stay dirty and are retried at the next checkpoint), or while a save has not
    returned for more than ``max_write_seconds`` (a back end that hangs: nothing fails, and
    nothing is saved); info once a save succeeded again, with the number of failures so far."""

    name = "persistence_errors"

    def __init__(self, max_write_seconds: float = 60.0) -> None:
        self.max_write_seconds = _positive("max_write_seconds", max_write_seconds)

    def check(self, status: PipelineStatus, now: datetime) -> HealthReport:
        waiting = {
            what: (now - since).total_seconds()
            for what, since in status.persistence_in_flight.items()
        }
        stuck = {what: age for what, age in waiting.items() if age > self.max_write_seconds}
        if stuck:
            return _report(
                self.new_id,
                now,
                "portfolio",
                self.name,
                Severity.CRITICAL,
                "; ".join(
                    f"{what} has not returned for {age:.1f} s"
                    for what, age in sorted(stuck.items())
                )
                + f" (max_write_seconds {self.max_write_seconds:g}): is the back end hanging?",
            )
        count = status.persistence_errors
        last_error = status.last_persistence_error
        if last_error is not None:
            return _report(
                self.new_id,
                now,
                "portfolio",
                self.name,
                Severity.CRITICAL,
                f"saving state is failing ({count} failure(s) so far); latest: {last_error}",
            )
        if count:
            return _report(
                self.new_id,
                now,
                "portfolio",
                self.name,
                Severity.INFO,
                f"state is being saved again after {count} earlier failure(s)",
            )
        return _report(
            self.new_id, now, "portfolio", self.name, Severity.INFO, "no persistence errors"
        )


class ReconnectionExhausted(HealthCheck):
    """Critical once a feed or transport gave up reconnecting (every attempt allowed by
    ``[reconnect]`` failed); warning while a connection is trying to reach its broker again;
    info otherwise."""

    name = "reconnection"

    def check(self, status: PipelineStatus, now: datetime) -> HealthReport:
        exhausted = status.reconnect_exhausted
        if exhausted:
            return _report(
                self.new_id,
                now,
                "pipeline",
                self.name,
                Severity.CRITICAL,
                f"reconnection attempts exhausted: {exhausted}",
            )
        if status.reconnecting:
            return _report(
                self.new_id,
                now,
                "pipeline",
                self.name,
                Severity.WARNING,
                "reconnecting: "
                + "; ".join(f"{what}: {why}" for what, why in sorted(status.reconnecting.items())),
            )
        return _report(
            self.new_id,
            now,
            "pipeline",
            self.name,
            Severity.INFO,
            "no connection has given up reconnecting",
        )


class EventLoopRunning(HealthCheck):
    """Is the pipeline moving? Critical when its event loop has not run for more than
    ``max_block_seconds``: a stage blocks it (a strategy in a long computation, a synchronous
    call that hangs), and nothing else goes on meanwhile (other stages, commits, a drain).
    Info otherwise, and before the pipeline runs."""

    name = "event_loop"

    def __init__(self, max_block_seconds: float = 10.0) -> None:
        self.max_block_seconds = _positive("max_block_seconds", max_block_seconds)

    def check(self, status: PipelineStatus, now: datetime) -> HealthReport:
        ran = status.loop_ran_at
        if ran is None or status.stopped_at is not None:
            message = "not running" if ran is None else "stopped"
            return _report(self.new_id, now, "pipeline", self.name, Severity.INFO, message)
        age = (now - ran).total_seconds()
        if age > self.max_block_seconds:
            return _report(
                self.new_id,
                now,
                "pipeline",
                self.name,
                Severity.CRITICAL,
                f"the event loop has not run for {age:.1f} s (max_block_seconds "
                f"{self.max_block_seconds:g}): a stage is blocking it",
                age,
            )
        return _report(
            self.new_id,
            now,
            "pipeline",
            self.name,
            Severity.INFO,
            f"the event loop runs (last {max(age, 0.0):.1f} s ago)",
            age,
        )


STOCK_CHECKS: dict[str, type[HealthCheck]] = {
    MarketDataFreshness.name: MarketDataFreshness,
    ConsumerLag.name: ConsumerLag,
    PersistenceErrors.name: PersistenceErrors,
    ReconnectionExhausted.name: ReconnectionExhausted,
    EventLoopRunning.name: EventLoopRunning,
}
"""The checks this plugin registers, by their configuration name."""
