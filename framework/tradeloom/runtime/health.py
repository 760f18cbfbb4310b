"""Running health checks: a check that raises is itself a critical finding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import uuid6

from tradeloom.components import HealthCheck
from tradeloom.events import HealthReport, Severity


def run_health_checks(
    checks: Sequence[tuple[str, HealthCheck]],
    status: Any,
    now: datetime,
    new_id: Callable[[], UUID] = uuid6.uuid7,
) -> list[HealthReport]:
    """Run every check against ``status`` at ``now``; never raises."""
    reports: list[HealthReport] = []
    for name, check in checks:
        try:
            found = check.check(status, now)
        except Exception as exc:
            found = HealthReport(
                event_id=new_id(),
                ts=now,
                stage="pipeline",
                check=name,
                severity=Severity.CRITICAL,
                message=f"health check {name!r} failed: {type(exc).__name__}: {exc}",
            )
        if isinstance(found, HealthReport):
            reports.append(found)
        elif isinstance(found, list | tuple) and all(isinstance(r, HealthReport) for r in found):
            reports.extend(found)
        else:
            reports.append(
                HealthReport(
                    event_id=new_id(),
                    ts=now,
                    stage="pipeline",
                    check=name,
                    severity=Severity.CRITICAL,
                    message=f"health check {name!r} returned {type(found).__name__}, "
                    "not HealthReports",
                )
            )
    return reports
