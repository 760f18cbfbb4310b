"""Registers the stock health checks, serves /health and /metrics while a pipeline runs (when
``[monitoring] http_port`` is set), and adds ``tradeloom health URL`` and ``--log-json``."""

from __future__ import annotations

import argparse
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tradeloom import hookimpl
from tradeloom_health.checks import STOCK_CHECKS
from tradeloom_health.commands import add_health_command, add_log_json_option
from tradeloom_health.logs import install_json_logging

if TYPE_CHECKING:
    from tradeloom.runtime.pipeline import Pipeline
    from tradeloom.runtime.results import RunResult
    from tradeloom_health.monitor import PipelineMonitor

_monitors: weakref.WeakKeyDictionary[Any, PipelineMonitor] = weakref.WeakKeyDictionary()


def monitor_for(pipeline: Pipeline) -> PipelineMonitor | None:
    """The monitor serving ``pipeline``'s endpoints, while it runs."""
    return _monitors.get(pipeline)


@hookimpl
def tradeloom_register_health_checks() -> Mapping[str, Any]:
    return dict(STOCK_CHECKS)


@hookimpl(trylast=True)  # after the built-in commands, whose parsers get --log-json
def tradeloom_add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    add_health_command(subparsers)
    add_log_json_option(subparsers, ("run", "backtest", "demo"))


@hookimpl
def tradeloom_pipeline_started(pipeline: Pipeline) -> None:
    monitoring = pipeline.settings.monitoring
    if monitoring.log_json:
        install_json_logging()
    if monitoring.http_port is None or pipeline in _monitors:
        return
    from tradeloom_health.monitor import PipelineMonitor

    _monitors[pipeline] = PipelineMonitor(pipeline).start()


@hookimpl
def tradeloom_pipeline_stopped(pipeline: Pipeline, result: RunResult) -> None:
    monitor = _monitors.pop(pipeline, None)
    if monitor is not None:
        monitor.stop()
