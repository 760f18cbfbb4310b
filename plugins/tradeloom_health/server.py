"""The monitoring HTTP server: ``GET /health``, ``GET /ready`` and ``GET /metrics`` (``HEAD``
too).

A :class:`http.server.ThreadingHTTPServer` in a daemon thread, so that a scrape never waits
for the pipeline's event loop and a busy pipeline never delays a scrape.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from tradeloom.errors import ConfigError
from tradeloom.events import HealthReport, Severity

HealthSource = Callable[[], Sequence[HealthReport]]
ReadinessSource = Callable[[], Sequence[str]]
"""Why the process is not ready (see :mod:`tradeloom_health.readiness`); empty when it is."""
logger = logging.getLogger("tradeloom.monitoring")


def health_status(reports: Sequence[HealthReport]) -> int:
    """200 when no report is critical, else 503."""
    critical = any(report.severity is Severity.CRITICAL for report in reports)
    return HTTPStatus.SERVICE_UNAVAILABLE if critical else HTTPStatus.OK


class MonitoringServer:
    """Serves ``/health`` (a JSON list of health reports; HTTP 200 when none is critical, 503
    otherwise), ``/ready`` when given a readiness source (``{"ready": ..., "reasons": [...]}``;
    200 when ready, 503 otherwise) and ``/metrics`` (Prometheus text format) on ``host:port``.

    ``port=0`` binds a free port; :attr:`port` tells which. With ``auth_token`` set, every
    request must carry ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        health: HealthSource,
        metrics: Callable[[], bytes] | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_token: SecretStr | None = None,
        ready: ReadinessSource | None = None,
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.ready = ready
        self.host = host
        self.requested_port = port
        self._token = auth_token
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the monitoring server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MonitoringServer:
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"monitor": self})
        try:
            server = _server_for(self.host)((self.host, self.requested_port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve /health and /metrics on {self.host}:{self.requested_port} "
                f"([monitoring] host/http_port): {exc.strerror or exc}"
            ) from None
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"tradeloom-monitoring-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MonitoringServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        if header is None:
            return False
        # The scheme's name is case-insensitive (RFC 7235); the token is compared in constant
        # time.
        scheme, _, credentials = header.strip().partition(" ")
        expected = self._token.get_secret_value().encode()
        given = credentials.strip().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(given, expected)


_ALLOWED = "GET, HEAD"


class _Handler(BaseHTTPRequestHandler):
    monitor: MonitoringServer
    server_version = "tradeloom-monitoring"
    _head = False  # answering HEAD: the headers GET would send, no body

    def do_HEAD(self) -> None:
        self._head = True
        self.do_GET()

    def _not_allowed(self) -> None:
        body = {"error": f"method not allowed: {self.command}", "allowed": _ALLOWED}
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED, _json(body), "application/json", {"Allow": _ALLOWED}
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_GET(self) -> None:
        monitor = self.monitor
        if not monitor.authorized(self.headers.get("Authorization")):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b'{"error": "missing or wrong bearer token"}\n',
                "application/json",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/health":
            self._health()
        elif path == "/ready" and monitor.ready is not None:
            self._ready(monitor.ready)
        elif path == "/metrics" and monitor.metrics is not None:
            self._send(HTTPStatus.OK, monitor.metrics(), CONTENT_TYPE_LATEST)
        else:
            endpoints = ["/health"]
            endpoints += ["/ready"] if monitor.ready is not None else []
            endpoints += ["/metrics"] if monitor.metrics is not None else []
            body = {"error": f"not found: {path}", "endpoints": endpoints}
            self._send(HTTPStatus.NOT_FOUND, _json(body), "application/json")

    def _ready(self, ready: ReadinessSource) -> None:
        try:
            reasons = list(ready())
        except Exception as exc:
            logger.exception("readiness could not be judged")
            reasons = [f"readiness could not be judged: {type(exc).__name__}: {exc}"]
        status = HTTPStatus.SERVICE_UNAVAILABLE if reasons else HTTPStatus.OK
        self._send(status, _json({"ready": not reasons, "reasons": reasons}), "application/json")

    def _health(self) -> None:
        try:
            reports = list(self.monitor.health())
        except Exception as exc:
            logger.exception("health checks failed")
            body = [
                {
                    "stage": "pipeline",
                    "check": "",
                    "severity": "critical",
                    "message": f"health checks failed: {type(exc).__name__}: {exc}",
                }
            ]
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, _json(body), "application/json")
            return
        body = [report.model_dump(mode="json") for report in reports]
        self._send(health_status(reports), _json(body), "application/json")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


class _ServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _server_for(host: str) -> type[ThreadingHTTPServer]:
    """The server class for ``host``: an IPv6 address (``::1``, ``::``) needs an IPv6 socket
    (ThreadingHTTPServer opens IPv4 ones)."""
    return _ServerV6 if ":" in host else ThreadingHTTPServer
