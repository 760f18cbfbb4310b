"""``tradeloom health URL`` against a real server: readable report, exit code by severity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from uuid6 import uuid7

from tradeloom.cli import main
from tradeloom.events import HealthReport, Severity
from tradeloom_health.commands import health_url
from tradeloom_health.server import MonitoringServer

NOW = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def report(severity: Severity, check: str, message: str) -> HealthReport:
    return HealthReport(
        event_id=uuid7(), ts=NOW, stage="feed", check=check, severity=severity, message=message
    )


@pytest.fixture
def served() -> Any:
    reports: list[HealthReport] = []
    with MonitoringServer(lambda: reports, None) as server:
        yield server, reports


@pytest.mark.parametrize(
    ("severities", "code", "headline"),
    [
        ([Severity.INFO, Severity.INFO], 0, "OK"),
        ([Severity.INFO, Severity.WARNING], 1, "WARNING"),
        ([Severity.WARNING, Severity.CRITICAL, Severity.INFO], 2, "CRITICAL"),
    ],
)
def test_exit_code_follows_the_worst_severity(
    served: Any,
    capsys: pytest.CaptureFixture[str],
    severities: list[Severity],
    code: int,
    headline: str,
) -> None:
    server, reports = served
    reports.extend(report(s, f"check_{i}", f"message {i}") for i, s in enumerate(severities))
    assert main(["health", server.url]) == code
    out = capsys.readouterr().out
    assert out.startswith(f"{headline}  {server.url}/health (HTTP {503 if code == 2 else 200}")
    lines = out.splitlines()[1:]
    assert len(lines) == len(severities)
    if severities:
        # Worst first, every report on its own line with its check and message.
        assert lines[0].split()[0] == max(severities, key=list(Severity).index).value
        for i in range(len(severities)):
            assert any(f"check_{i}" in line and f"message {i}" in line for line in lines)


def test_json_output(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server, reports = served
    reports.append(report(Severity.WARNING, "consumer_lag", "risk/signals: 2000 behind"))
    assert main(["health", server.url + "/health", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["check"] == "consumer_lag" and printed[0]["severity"] == "warning"


def test_no_reports_at_all_is_unknown(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing checked is not healthy: the answer was "OK" with exit 0.
    server, _ = served
    assert main(["health", server.url]) == 3
    assert capsys.readouterr().err == (
        f"UNKNOWN  {server.url}/health: HTTP 200: no health reports (nothing is checked)\n"
    )


def test_unreachable_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    with MonitoringServer(list, None) as server:
        url = server.url
    assert main(["health", url, "--timeout", "2"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"UNKNOWN  {url}/health: cannot read health")


def test_an_answer_cut_short_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    # IncompleteRead is no OSError: it escaped as a traceback with exit status 1 (WARNING).
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n[{"a"'
            )

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        assert main(["health", f"http://127.0.0.1:{port}", "--timeout", "5"]) == 3
    finally:
        thread.join(5)
        listener.close()
    err = capsys.readouterr().err
    assert err.startswith(f"UNKNOWN  http://127.0.0.1:{port}/health: cannot read health: ")
    assert "IncompleteRead" in err and "Traceback" not in err


def test_not_a_health_endpoint_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    with MonitoringServer(list, lambda: b"up 1\n") as server:
        assert main(["health", server.url + "/metrics"]) == 3
    assert "cannot read health" in capsys.readouterr().err


def test_token_from_option_or_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = [report(Severity.INFO, "feed_freshness", "fresh")]
    with MonitoringServer(lambda: healthy, None, auth_token=SecretStr("tok-123")) as server:
        assert main(["health", server.url]) == 3
        assert "HTTP 401" in capsys.readouterr().err
        assert main(["health", server.url, "--token", "tok-123"]) == 0
        monkeypatch.setenv("TRADELOOM_MONITORING__AUTH_TOKEN", "tok-123")
        assert main(["health", server.url]) == 0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:9108", "http://127.0.0.1:9108/health"),
        ("http://127.0.0.1:9108/", "http://127.0.0.1:9108/health"),
        ("127.0.0.1:9108", "http://127.0.0.1:9108/health"),
        ("http://host:1/custom/health", "http://host:1/custom/health"),
    ],
)
def test_health_url(given: str, expected: str) -> None:
    assert health_url(given) == expected


def test_ready_exits_0_when_ready_and_2_with_the_reasons_when_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reasons: list[str] = []
    with MonitoringServer(list, None, ready=lambda: reasons) as server:
        assert main(["health", server.url, "--ready"]) == 0
        assert capsys.readouterr().out == f"READY  {server.url}/ready (HTTP 200)\n"
        reasons += ["stopping: taking no more input", "reconnecting: redpanda transport: down"]
        assert main(["health", server.url, "--ready"]) == 2
        assert capsys.readouterr().out == (
            f"NOT READY  {server.url}/ready (HTTP 503)\n"
            "  stopping: taking no more input\n"
            "  reconnecting: redpanda transport: down\n"
        )
        assert main(["health", server.url, "--ready", "--json"]) == 2
        assert json.loads(capsys.readouterr().out) == {"ready": False, "reasons": reasons}
        # A health endpoint is not a readiness answer, and the other way round: each says so.
        assert main(["health", server.url + "/health", "--ready"]) == 3
        assert capsys.readouterr().err.endswith(
            "HTTP 200: not a readiness answer (health reports: ask the pipeline's URL without "
            "a path, or URL/ready)\n"
        )
        assert main(["health", server.url + "/ready"]) == 3
        assert capsys.readouterr().err.endswith(
            "HTTP 503: not a list of health reports (a readiness answer: add --ready)\n"
        )
        url = server.url
    assert main(["health", url, "--ready"]) == 3  # the server has stopped
    assert "/ready: cannot read readiness: " in capsys.readouterr().err


def test_a_bad_url_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "ftp://example/health"]) == 3
    assert "not an http URL" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["-5", "0", "nan", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_an_unknown_usage_error(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["health", "http://127.0.0.1:1/health", "--timeout", timeout])
    assert exited.value.code == 3  # Nagios: a usage error is "unknown", never "critical"
    assert "argument --timeout:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "status", "usage"),
    [
        # Nagios: every usage error of the health check is "unknown" (3), never "critical".
        (["health"], 3, "usage: tradeloom health"),
        (["health", "http://127.0.0.1:1", "--bogus"], 3, "usage: tradeloom health"),
        (["health", "a", "b"], 3, "usage: tradeloom health"),
        (["--bogus", "health", "http://127.0.0.1:1"], 3, "usage: tradeloom health"),
        # Other commands keep argparse's 2, each with its own usage line.
        (["backtest", "--bogus"], 2, "usage: tradeloom backtest"),
        (["no-such-command"], 2, "usage: tradeloom "),
        (["plugins", "extra"], 2, "usage: tradeloom plugins"),
    ],
    ids=[
        "no URL",
        "unknown option",
        "two URLs",
        "unknown option before the command",
        "backtest",
        "unknown command",
        "plugins",
    ],
)
def test_a_usage_error_exits_with_the_status_of_its_command(
    argv: list[str], status: int, usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == status
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert "error:" in err
