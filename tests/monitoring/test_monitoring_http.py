"""/health and /metrics over real HTTP on 127.0.0.1, standalone and from a running pipeline."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from tradeloom_monitoring_testplugin import BuyOnce, TickFeed

from tradeloom import Pipeline, hookimpl
from tradeloom.errors import ConfigError
from tradeloom.runtime.status import PipelineStatus
from tradeloom.settings import Settings
from tradeloom_health.checks import MarketDataFreshness, PersistenceErrors
from tradeloom_health.metrics import PipelineMetrics
from tradeloom_health.monitor import run_checks
from tradeloom_health.plugin import monitor_for
from tradeloom_health.readiness import not_ready_because
from tradeloom_health.server import MonitoringServer

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """GET over HTTP; return the status, content type and body (also for error statuses)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


class Monitored:
    """A status, two checks and a clock the test moves, served over HTTP."""

    def __init__(self, **server_options: Any) -> None:
        self.now = T0
        self.status = PipelineStatus(started_at=T0)
        self.checks = [
            ("market_data_freshness", MarketDataFreshness(30, 5)),
            ("persistence_errors", PersistenceErrors()),
        ]
        self.metrics = PipelineMetrics(self.status, health=self.health)
        self.server = MonitoringServer(
            self.health, self.metrics.exposition, ready=self.not_ready_because, **server_options
        )

    def health(self) -> list[Any]:
        return run_checks(self.checks, self.status, self.now)

    def not_ready_because(self) -> list[str]:
        return not_ready_because(self.status, self.health())


@pytest.fixture
def monitored() -> Any:
    served = Monitored()
    with served.server:
        yield served


def test_health_is_200_until_something_is_critical(monitored: Monitored) -> None:
    url = monitored.server.url + "/health"
    assert monitored.server.url.startswith("http://127.0.0.1:")

    status, content_type, body = get(url)
    assert (status, content_type) == (200, "application/json")
    reports = json.loads(body)
    assert [r["check"] for r in reports] == ["market_data_freshness", "persistence_errors"]
    assert reports[0]["severity"] == "info"
    assert reports[0]["message"].startswith("in startup grace period")
    assert {"event_id", "ts", "stage", "severity", "message", "age_seconds"} <= set(reports[0])

    monitored.now = T0 + timedelta(seconds=31)  # grace over, no tick yet
    status, _, body = get(url)
    assert status == 503
    assert json.loads(body)[0]["message"].startswith("no recent market data")

    monitored.status.last_market_wall_time = T0 + timedelta(seconds=30)
    status, _, body = get(url)
    assert status == 200
    assert json.loads(body)[0]["age_seconds"] == 1.0

    monitored.status.last_persistence_error = "saving snapshots: disk full"
    assert get(url)[0] == 503


def test_metrics_are_prometheus_text(monitored: Monitored) -> None:
    monitored.status.stage("risk").events_in = 12
    monitored.status.rejections["max_position"] = 4
    monitored.now = T0 + timedelta(seconds=31)

    status, content_type, body = get(monitored.server.url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert families["tradeloom_stage_events_in"].samples[0].value == 12
    assert families["tradeloom_rejections"].samples[0].labels == {"validator": "max_position"}
    severity = {s.labels["check"]: s.value for s in families["tradeloom_health_severity"].samples}
    assert severity == {"market_data_freshness": 2, "persistence_errors": 0}
    assert "tradeloom_stage_processing_seconds" in families


def test_unknown_paths_are_404(monitored: Monitored) -> None:
    status, _, body = get(monitored.server.url + "/nope")
    assert status == 404
    assert json.loads(body)["endpoints"] == ["/health", "/ready", "/metrics"]


def request(url: str, method: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``method`` to ``url``; return the status, headers and body as read."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_head_answers_what_get_would_without_a_body(monitored: Monitored) -> None:
    url = monitored.server.url + "/health"
    status, headers, body = request(url, "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(get(url)[2].encode())

    monitored.now = T0 + timedelta(seconds=31)  # critical: a probe by HEAD sees it too
    assert request(url, "HEAD")[:3:2] == (503, b"")
    assert request(monitored.server.url + "/metrics", "HEAD")[0] == 200
    assert request(monitored.server.url + "/nope", "HEAD")[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_not_allowed(monitored: Monitored, method: str) -> None:
    status, headers, body = request(monitored.server.url + "/health", method)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert json.loads(body)["error"] == f"method not allowed: {method}"


def test_a_stopping_pipeline_says_so_and_old_data_is_not_critical(monitored: Monitored) -> None:
    url = monitored.server.url + "/health"
    monitored.status.last_market_wall_time = T0
    monitored.now = T0 + timedelta(seconds=60)  # the last tick is 60 s old: critical
    assert get(url)[0] == 503

    monitored.status.draining_since = T0 + timedelta(seconds=58)
    status, _, body = get(url)
    assert status == 200
    reports = json.loads(body)
    assert [(r["check"], r["severity"]) for r in reports] == [
        ("lifecycle", "warning"),
        ("market_data_freshness", "info"),
        ("persistence_errors", "info"),
    ]
    assert reports[0]["message"] == (
        "stopping: taking no more input, finishing what is in flight (for 2.0 s)"
    )
    assert reports[0]["age_seconds"] == 2.0
    assert reports[1]["message"] == (
        "the pipeline is stopping: market data is no longer taken in (last tick 60.0 s ago)"
    )

    monitored.status.last_persistence_error = "saving snapshots: disk full"
    assert get(url)[0] == 503  # a real failure while stopping still is one

    monitored.status.stopped_at = T0 + timedelta(seconds=59)
    assert json.loads(get(url)[2])[0]["message"] == "stopped 1.0 s ago"


def test_ready_is_200_only_while_the_pipeline_takes_input_and_nothing_is_critical(
    monitored: Monitored,
) -> None:
    url = monitored.server.url + "/ready"
    status, content_type, body = get(url)
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"ready": True, "reasons": []}

    monitored.status.reconnecting["redpanda transport"] = "broker unreachable since 09:30:00"
    status, _, body = get(url)
    assert status == 503
    assert json.loads(body) == {
        "ready": False,
        "reasons": ["reconnecting: redpanda transport: broker unreachable since 09:30:00"],
    }
    monitored.status.reconnecting.clear()

    monitored.now = T0 + timedelta(seconds=31)  # no tick after the grace period: critical
    status, _, body = get(url)
    assert status == 503
    [reason] = json.loads(body)["reasons"]
    assert reason.startswith("critical: feed market_data_freshness: no recent market data")

    # Stopping: /health stays 200 (nothing is wrong), /ready is 503 (it takes no input).
    monitored.status.draining_since = T0 + timedelta(seconds=30)
    assert get(monitored.server.url + "/health")[0] == 200
    status, _, body = get(url)
    assert status == 503
    assert json.loads(body)["reasons"] == [
        "stopping: taking no more input, finishing what is in flight (for 1.0 s)"
    ]
    assert request(url, "HEAD")[:3:2] == (503, b"")


def test_ready_says_why_it_cannot_tell() -> None:
    def broken() -> list[str]:
        raise RuntimeError("status unavailable")

    with MonitoringServer(lambda: [], None, ready=broken) as server:
        status, _, body = get(server.url + "/ready")
    assert status == 503
    assert json.loads(body) == {
        "ready": False,
        "reasons": ["readiness could not be judged: RuntimeError: status unavailable"],
    }


def test_without_a_readiness_source_there_is_no_ready_endpoint() -> None:
    with MonitoringServer(lambda: [], None) as server:
        status, _, body = get(server.url + "/ready")
    assert status == 404
    assert json.loads(body)["endpoints"] == ["/health"]


def test_bearer_token_is_required_when_configured() -> None:
    served = Monitored(auth_token=SecretStr("t0ken-value"))
    with served.server:
        url = served.server.url
        assert get(url + "/health")[0] == 401
        assert get(url + "/metrics", token="wrong")[0] == 401
        assert get(url + "/health", token="t0ken-value")[0] == 200
        assert get(url + "/metrics", token="t0ken-value")[0] == 200


def test_the_scheme_of_the_token_is_case_insensitive() -> None:
    # RFC 7235: "bearer" is the same scheme as "Bearer"; the token itself is exact.
    served = Monitored(auth_token=SecretStr("t0ken-value"))
    with served.server:
        url = served.server.url + "/metrics"
        for header, status in [
            ("bearer t0ken-value", 200),
            ("BEARER  t0ken-value", 200),
            ("Bearer T0KEN-VALUE", 401),
            ("Basic t0ken-value", 401),
            ("t0ken-value", 401),
        ]:
            request = urllib.request.Request(url, headers={"Authorization": header})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    got = response.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, header


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_an_ipv6_host_is_served() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:  # IPv6 built in but switched off for loopback here
        pytest.skip(f"::1 cannot be bound here: {exc}")
    server = MonitoringServer(list, lambda: b"up 1\n", host="::1").start()
    try:
        assert server.url.startswith("http://[::1]:")
        status, _, body = get(server.url + "/metrics")
        assert status == 200 and body == "up 1\n"
    finally:
        server.stop()


def test_a_port_in_use_is_a_clear_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MonitoringServer(list, None, port=port)
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port} .*http_port"):
            server.start()


def test_server_stops_and_releases_its_port(monitored: Monitored) -> None:
    url = monitored.server.url
    monitored.server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=2)


def test_a_live_pipeline_serves_while_it_runs() -> None:
    settings = Settings(
        executor={"name": "paper", "params": {"fill_at": "last"}},
        monitoring={"http_port": 0},
        health={
            "checks": [
                {
                    "name": "market_data_freshness",
                    "params": {"grace_period_seconds": 600, "max_tick_age_seconds": 600},
                },
                {"name": "consumer_lag"},
            ]
        },
    )
    feed = TickFeed(count=3, hold=True)
    pipeline = Pipeline(settings, mode="live", feed=feed, strategies={"buyer": BuyOnce()})
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(10):
                await feed.sent.wait()
            monitor = monitor_for(pipeline)
            assert monitor is not None
            seen["url"] = url = monitor.url
            seen["health"] = await anyio.to_thread.run_sync(get, url + "/health")
            seen["ready"] = await anyio.to_thread.run_sync(get, url + "/ready")
            seen["metrics"] = await anyio.to_thread.run_sync(get, url + "/metrics")
            feed.release.set()

    anyio.run(main)
    status, _, body = seen["health"]
    assert status == 200
    reports = json.loads(body)
    assert [r["check"] for r in reports] == ["market_data_freshness", "consumer_lag"]
    assert reports[0]["message"].startswith("market data is fresh")
    assert seen["ready"][0] == 200 and json.loads(seen["ready"][2])["ready"] is True

    families = {f.name: f for f in text_string_to_metric_families(seen["metrics"][2])}
    events_in = {s.labels["stage"]: s.value for s in families["tradeloom_stage_events_in"].samples}
    assert events_in["strategy"] >= 3
    latency = families["tradeloom_tick_to_fill_seconds"].samples
    assert [s.value for s in latency if s.name.endswith("_count")] == [1]

    assert monitor_for(pipeline) is None  # stopped with the pipeline
    assert pipeline.status.stage_observer is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(seen["url"] + "/health", timeout=2)


def test_health_while_a_live_pipeline_drains_says_it_is_stopping() -> None:
    settings = Settings(
        monitoring={"http_port": 0},
        health={"checks": [{"name": "market_data_freshness"}]},
    )
    feed = TickFeed(count=3, hold=True)
    pipeline = Pipeline(settings, mode="live", feed=feed, strategies={"buyer": BuyOnce()})
    seen: dict[str, Any] = {}

    class AskWhileStopping:
        @hookimpl
        def tradeloom_pipeline_stopping(self, pipeline: Pipeline) -> Any:
            monitor = monitor_for(pipeline)
            assert monitor is not None

            async def ask() -> None:
                seen["health"] = await anyio.to_thread.run_sync(get, monitor.url + "/health")
                seen["ready"] = await anyio.to_thread.run_sync(get, monitor.url + "/ready")

            return ask()

    pipeline.manager.register(AskWhileStopping())

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(10):
                await feed.sent.wait()
            pipeline.stop()
            feed.release.set()

    anyio.run(main)
    status, _, body = seen["health"]
    assert status == 200
    reports = json.loads(body)
    assert [(r["check"], r["severity"]) for r in reports] == [
        ("lifecycle", "warning"),
        ("market_data_freshness", "info"),
    ]
    assert reports[0]["message"].startswith("stopping: taking no more input")
    assert reports[1]["message"].startswith("the pipeline is stopping")
    status, _, body = seen["ready"]
    assert status == 503
    assert json.loads(body)["reasons"][0].startswith("stopping: taking no more input")


def test_without_checks_configured_every_stock_check_runs() -> None:
    settings = Settings(monitoring={"http_port": 0})
    feed = TickFeed(count=1, hold=True)
    pipeline = Pipeline(settings, mode="live", feed=feed, strategies={"buyer": BuyOnce()})
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(10):
                await feed.sent.wait()
            monitor = monitor_for(pipeline)
            assert monitor is not None
            seen["health"] = await anyio.to_thread.run_sync(get, monitor.url + "/health")
            feed.release.set()

    anyio.run(main)
    reports = {r["check"]: r for r in json.loads(seen["health"][2])}
    assert reports["event_loop"]["severity"] == "info"
    assert reports["event_loop"]["message"].startswith("the event loop runs (last ")
    checks = set(reports)
    assert checks == {
        "market_data_freshness",
        "consumer_lag",
        "persistence_errors",
        "reconnection",
        "event_loop",
    }


def test_a_slow_write_in_a_thread_is_not_a_blocked_event_loop() -> None:
    # The loop's heartbeat was the ticker's, which waits for journal writes (in a thread in a
    # live run, the loop free): a write of 1.5 s made event_loop say "a stage is blocking it".
    import time as clock

    from tradeloom import hookimpl
    from tradeloom_health.checks import EventLoopRunning
    from tradeloom_memory.persistence import MemoryPersistence

    class SlowJournal(MemoryPersistence):
        def record_fills(self, fills: Any) -> None:
            clock.sleep(1.5)
            super().record_fills(fills)

    class Plugin:
        @hookimpl
        def tradeloom_register_persistence(self) -> dict[str, Any]:
            return {"slow_journal": SlowJournal}

    settings = Settings(
        executor={"name": "paper", "params": {"fill_at": "last"}},
        persistence={"name": "slow_journal"},
    )
    feed = TickFeed(count=3, hold=True)
    pipeline = Pipeline(
        settings, mode="live", feed=feed, strategies={"buyer": BuyOnce()}, plugins=[Plugin()]
    )
    check = EventLoopRunning(max_block_seconds=0.5)
    seen: list[tuple[list[str], str]] = []

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(10):
                await feed.sent.wait()
                while not pipeline.status.persistence_in_flight:
                    await anyio.sleep(0.05)
            for _ in range(10):  # 1 s of the write
                await anyio.sleep(0.1)
                report = check.check(pipeline.status, datetime.now(UTC))
                seen.append((list(pipeline.status.persistence_in_flight), report.severity.value))
            feed.release.set()

    anyio.run(main)
    assert any(in_flight == ["journaling fills"] for in_flight, _ in seen)
    assert {severity for _, severity in seen} == {"info"}


def test_a_failed_pipeline_is_not_ready_while_it_saves_and_closes() -> None:
    # The failure path set no lifecycle: /ready answered 200 while the failed run saved.
    from tradeloom import Strategy
    from tradeloom.testing import ticks
    from tradeloom_memory.persistence import MemoryPersistence

    said: list[list[str]] = []
    pipelines: list[Pipeline] = []

    class AsksWhileSaving(MemoryPersistence):
        def save_snapshots(self, snapshots: Any) -> None:
            pipeline = pipelines[0]
            said.append(not_ready_because(pipeline.status, pipeline.health()))
            super().save_snapshots(snapshots)

    class SavingPlugin:
        @hookimpl
        def tradeloom_register_persistence(self) -> dict[str, Any]:
            return {"asks_while_saving": AsksWhileSaving}

    class FailsOnTheThird(Strategy):
        def on_tick(self, tick: Any, ctx: Any) -> None:
            if not ctx.position("X"):
                ctx.buy("X", 1)
            if tick.last_price == 102:
                raise RuntimeError("a bug")

    settings = Settings(
        executor={"name": "paper", "params": {"fill_at": "last"}},
        persistence={"name": "asks_while_saving"},
        health={"checks": [{"name": "persistence_errors"}]},
    )
    pipeline = Pipeline(
        settings,
        mode="live",
        strategies={"s": FailsOnTheThird()},
        events=ticks("X", ["100", "101", "102", "103"], start=datetime.now(UTC)),
        plugins=[SavingPlugin()],
    )
    pipelines.append(pipeline)
    with pytest.raises(Exception, match="a bug"):
        anyio.run(pipeline.run)
    assert said, "the failed run saved nothing"
    assert said[-1][0].startswith("stopping: taking no more input")
