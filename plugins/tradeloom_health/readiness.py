"""Readiness: whether a pipeline process is doing its work, for ``GET /ready``.

``/health`` answers whether something is wrong (a liveness probe may restart the process on a
503). ``/ready`` answers the narrower question a rolling update or a load balancer asks: is
this process taking input and passing it on now? It is not while it stops (or has stopped),
while a connection to the broker is down, or while a health report is critical.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradeloom.events import HealthReport, Severity
from tradeloom.runtime.status import PipelineStatus


def not_ready_because(status: PipelineStatus, reports: Sequence[HealthReport]) -> list[str]:
    """Why the process is not ready, one reason per line; empty when it is ready.

    ``reports`` are the health reports of the same moment (``run_health_checks``): the
    ``lifecycle`` one says the pipeline stops, the critical ones say what is broken."""
    reasons = [report.message for report in reports if report.check == "lifecycle"]
    reasons += [f"reconnecting: {what}: {why}" for what, why in sorted(status.reconnecting.items())]
    reasons += [
        f"critical: {report.stage} {report.check}: {report.message}"
        for report in reports
        if report.severity is Severity.CRITICAL
    ]
    return reasons
