"""Attaching metrics and the HTTP endpoints to a running pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from uuid6 import uuid7

from tradeloom.components import HealthCheck
from tradeloom.events import HealthReport, Severity
from tradeloom.runtime.transport import Topics
from tradeloom_health.checks import STOCK_CHECKS
from tradeloom_health.metrics import PipelineMetrics
from tradeloom_health.server import MonitoringServer

if TYPE_CHECKING:
    from tradeloom.runtime.pipeline import Pipeline

logger = logging.getLogger("tradeloom.monitoring")

# Which stage records a fill's tick-to-fill latency: the first of these this process runs.
_FILL_STAGES = ("portfolio", "risk", "strategy")


def run_checks(
    checks: list[tuple[str, HealthCheck]], status: Any, now: datetime
) -> list[HealthReport]:
    """Run checks; a check that raises becomes a critical report naming it."""
    reports: list[HealthReport] = []
    for name, check in checks:
        try:
            found = check.check(status, now)
        except Exception as exc:
            found = HealthReport(
                event_id=uuid7(),
                ts=now,
                stage="pipeline",
                check=name,
                severity=Severity.CRITICAL,
                message=f"health check {name!r} failed: {type(exc).__name__}: {exc}",
            )
        reports.extend([found] if isinstance(found, HealthReport) else found)
    return reports


class PipelineMonitor:
    """Metrics and the /health and /metrics server for one pipeline, from its
    ``[monitoring]`` settings.

    Health runs the pipeline's ``[[health.checks]]``; when none are configured it runs every
    stock check with its default parameters, so that /health is never vacuously healthy.
    """

    def __init__(
        self, pipeline: Pipeline, *, wall_clock: Callable[[], datetime] | None = None
    ) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings.monitoring
        self._wall_clock = wall_clock or (lambda: datetime.now(UTC))
        self.checks: list[tuple[str, HealthCheck]] = list(pipeline.health_checks) or [
            (name, factory()) for name, factory in STOCK_CHECKS.items()
        ]
        roles = {stage.role for stage in pipeline.stages}
        market_stage = None
        if "feed" not in pipeline.roles:
            market_stage = next(
                (stage.role for stage in pipeline.stages if Topics.MARKET in stage.topics), None
            )
        self.metrics = PipelineMetrics(
            pipeline.status,
            health=self.health,
            fill_stage=next((role for role in _FILL_STAGES if role in roles), None),
            market_stage=market_stage,
            wall_clock=self._wall_clock,
        )
        self.server = MonitoringServer(
            self.health,
            self.metrics.exposition,
            host=self.settings.host,
            port=self.settings.http_port or 0,
            auth_token=self.settings.auth_token,
        )

    def health(self, now: datetime | None = None) -> list[HealthReport]:
        return run_checks(self.checks, self.pipeline.status, now or self._wall_clock())

    def start(self) -> PipelineMonitor:
        self.server.start()
        self.pipeline.status.stage_observer = self.metrics.observe
        logger.info(
            "serving /health and /metrics on %s", self.server.url, extra={"url": self.server.url}
        )
        logger.debug("monitoring settings: %s", self.settings)
        if self.settings.host not in ("127.0.0.1", "::1", "localhost") and not (
            self.settings.auth_token
        ):
            logger.warning(
                "monitoring listens on %s without [monitoring] auth_token", self.settings.host
            )
        return self

    def stop(self) -> None:
        if self.pipeline.status.stage_observer == self.metrics.observe:
            self.pipeline.status.stage_observer = None
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url
