"""Attaching metrics and the HTTP endpoints to a running pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tradeloom.components import HealthCheck
from tradeloom.events import HealthReport
from tradeloom.runtime.health import run_health_checks
from tradeloom.runtime.transport import Topics
from tradeloom_health.checks import STOCK_CHECKS
from tradeloom_health.metrics import PipelineMetrics
from tradeloom_health.readiness import not_ready_because
from tradeloom_health.server import MonitoringServer

if TYPE_CHECKING:
    from tradeloom.runtime.pipeline import Pipeline

logger = logging.getLogger("tradeloom.monitoring")

# Which stage records a fill's tick-to-fill latency: the first of these this process runs.
_FILL_STAGES = ("portfolio", "risk", "strategy")


run_checks = run_health_checks
"""Run checks; a check that raises becomes a critical report naming it."""


class PipelineMonitor:
    """Metrics and the /health, /ready and /metrics server for one pipeline, from its
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
            ready=self.not_ready_because,
        )

    def health(self, now: datetime | None = None) -> list[HealthReport]:
        return run_checks(self.checks, self.pipeline.status, now or self._wall_clock())

    def not_ready_because(self, now: datetime | None = None) -> list[str]:
        """Why the process is not ready (``/ready``); empty when it is."""
        return not_ready_because(self.pipeline.status, self.health(now))

    def start(self) -> PipelineMonitor:
        self.server.start()
        self.pipeline.status.stage_observer = self.metrics.observe
        logger.info(
            "serving /health, /ready and /metrics on %s",
            self.server.url,
            extra={"url": self.server.url},
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
