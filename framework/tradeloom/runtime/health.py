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
    """Run every check against ``status`` at ``now``; never raises.

    A pipeline that is stopping (it takes no more input while it finishes what is in flight)
    or has stopped says so first, in a warning (``check="lifecycle"``).
    """
    reports: list[HealthReport] = []
    draining_since = getattr(status, "draining_since", None)
    if draining_since is not None:
        stopped_at = getattr(status, "stopped_at", None)
        since = draining_since if stopped_at is None else stopped_at
        seconds = max(0.0, (now - since).total_seconds())
        reports.append(
            HealthReport(
                event_id=new_id(),
                ts=now,
                stage="pipeline",
                check="lifecycle",
                severity=Severity.WARNING,
                message=(
                    f"stopping: taking no more input, finishing what is in flight "
                    f"(for {seconds:.1f} s)"
                    if stopped_at is None
                    else f"stopped {seconds:.1f} s ago"
                ),
                age_seconds=seconds,
            )
        )
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
