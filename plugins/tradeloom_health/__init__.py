"""Stock monitoring plugin: health checks, Prometheus metrics, the /health and /metrics HTTP
endpoints, ``tradeloom health URL`` and JSON logging.

Registered through the ``tradeloom`` entry point ``health`` (module
:mod:`tradeloom_health.plugin`). See docs/monitoring.md.
"""

from tradeloom_health.checks import (
    ConsumerLag,
    MarketDataFreshness,
    PersistenceErrors,
    ReconnectionExhausted,
)
from tradeloom_health.logs import JsonFormatter, event_fields, install_json_logging
from tradeloom_health.metrics import PipelineMetrics
from tradeloom_health.server import MonitoringServer

__all__ = [
    "ConsumerLag",
    "JsonFormatter",
    "MarketDataFreshness",
    "MonitoringServer",
    "PersistenceErrors",
    "PipelineMetrics",
    "ReconnectionExhausted",
    "event_fields",
    "install_json_logging",
]
