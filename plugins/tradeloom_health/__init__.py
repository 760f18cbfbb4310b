"""Stock monitoring plugin: health checks, Prometheus metrics, the /health, /ready and /metrics
HTTP endpoints, ``tradeloom health URL`` and JSON logging.

Registered through the ``tradeloom`` entry point ``health`` (module
:mod:`tradeloom_health.plugin`). See docs/monitoring.md. The names below are imported when
first used: a run without monitoring does not import the metrics library or the server.
"""

from tradeloom.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ConsumerLag": "tradeloom_health.checks",
        "JsonFormatter": "tradeloom_health.logs",
        "MarketDataFreshness": "tradeloom_health.checks",
        "MonitoringServer": "tradeloom_health.server",
        "PersistenceErrors": "tradeloom_health.checks",
        "PipelineMetrics": "tradeloom_health.metrics",
        "ReconnectionExhausted": "tradeloom_health.checks",
        "event_fields": "tradeloom_health.logs",
        "install_json_logging": "tradeloom_health.logs",
        "not_ready_because": "tradeloom_health.readiness",
    },
)
