"""``tradeloom health URL`` and the ``--log-json`` option of the pipeline commands."""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from tradeloom_health.logs import install_json_logging

# Exit codes follow the Nagios plugin convention, so the command drops into existing monitors.
EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3
_EXIT_BY_SEVERITY = {"info": EXIT_OK, "warning": EXIT_WARNING, "critical": EXIT_CRITICAL}
TOKEN_ENV = "TRADELOOM_MONITORING__AUTH_TOKEN"


def add_health_command(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "health",
        help="print the health of a running pipeline (exit 0 ok, 1 warning, 2 critical)",
        description="Fetch URL/health of a pipeline started with [monitoring] http_port and "
        "print its health reports. Exit code: 0 when every report is info, 1 when the worst "
        "is a warning, 2 when one is critical, 3 when the pipeline cannot be reached, "
        "answers something that is not a health report, or the command line is wrong.",
    )
    parser.add_argument("url", help="e.g. http://127.0.0.1:9108 (/health is added if missing)")
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=5.0,
        help="seconds to wait (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument(
        "--ready",
        action="store_true",
        help="ask URL/ready instead: exit 0 when the pipeline takes input and nothing is "
        "critical, 2 when it is not ready (the reasons are printed)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token for [monitoring] auth_token (default: ${TOKEN_ENV})",
    )
    # A usage error is "unknown" too: a mistyped monitor must not page as a critical pipeline.
    parser.set_defaults(func=cmd_health, usage_error_status=EXIT_UNKNOWN)


def add_log_json_option(
    subparsers: argparse._SubParsersAction[Any], commands: Iterable[str]
) -> None:
    """Give the pipeline commands ``--log-json``: JSON log lines on standard error."""
    for name in commands:
        parser = subparsers.choices.get(name)
        if parser is None:
            continue
        parser.add_argument(
            "--log-json",
            action="store_true",
            help="log one JSON object per line, with event ids and instruments",
        )
        handler = parser.get_default("func")
        if handler is not None:
            parser.set_defaults(func=_with_log_json(handler))


def _with_log_json(handler: Callable[[argparse.Namespace], Any]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> Any:
        if getattr(args, "log_json", False):
            install_json_logging()
        return handler(args)

    return run


def health_url(url: str, endpoint: str = "/health") -> str:
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else endpoint
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return seconds


def fetch_health(url: str, *, timeout: float, token: str | None) -> tuple[int, Any]:
    """GET the health URL; return the HTTP status and the decoded JSON body."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:  # 503 still carries the reports
        status, body = exc.code, exc.read()
    return status, json.loads(body)


def cmd_health(args: argparse.Namespace) -> int:
    try:
        url = health_url(args.url, "/ready" if args.ready else "/health")
    except ValueError as exc:
        print(f"tradeloom health: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    token = args.token or os.environ.get(TOKEN_ENV)
    try:
        status, reports = fetch_health(url, timeout=args.timeout, token=token)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # HTTPException: an answer cut short (IncompleteRead), or not HTTP at all.
        reason = getattr(exc, "reason", None) or exc
        what = "readiness" if args.ready else "health"
        print(
            f"UNKNOWN  {url}: cannot read {what}: {type(exc).__name__}: {reason}"
            if isinstance(exc, http.client.HTTPException)
            else f"UNKNOWN  {url}: cannot read {what}: {reason}",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    if status == 401:
        print(f"UNKNOWN  {url}: HTTP 401: wrong or missing token (--token)", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.ready:
        return _print_readiness(url, status, reports, as_json=args.json)
    if not _is_report_list(reports):
        hint = " (a readiness answer: add --ready)" if _is_readiness(reports) else ""
        print(f"UNKNOWN  {url}: HTTP {status}: not a list of health reports{hint}", file=sys.stderr)
        return EXIT_UNKNOWN
    if not reports:  # healthy by having nothing to look at is not healthy
        print(
            f"UNKNOWN  {url}: HTTP {status}: no health reports (nothing is checked)",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    code = max((_EXIT_BY_SEVERITY[r["severity"]] for r in reports), default=EXIT_OK)
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return code
    overall = {EXIT_OK: "OK", EXIT_WARNING: "WARNING", EXIT_CRITICAL: "CRITICAL"}[code]
    print(f"{overall}  {url} (HTTP {status}, {len(reports)} report(s))")
    order = {"critical": 0, "warning": 1, "info": 2}
    for report in sorted(reports, key=lambda r: order[r["severity"]]):
        print(
            f"  {report['severity']:<9} {report.get('stage', ''):<10} "
            f"{report.get('check', ''):<22} {report.get('message', '')}"
        )
    return code


def _is_readiness(answer: Any) -> bool:
    return (
        isinstance(answer, dict)
        and isinstance(answer.get("ready"), bool)
        and isinstance(answer.get("reasons"), list)
        and all(isinstance(reason, str) for reason in answer["reasons"])
    )


def _print_readiness(url: str, status: int, answer: Any, *, as_json: bool) -> int:
    if not _is_readiness(answer):
        hint = (
            " (health reports: ask the pipeline's URL without a path, or URL/ready)"
            if _is_report_list(answer)
            else ""
        )
        print(f"UNKNOWN  {url}: HTTP {status}: not a readiness answer{hint}", file=sys.stderr)
        return EXIT_UNKNOWN
    code = EXIT_OK if answer["ready"] else EXIT_CRITICAL
    if as_json:
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return code
    print(f"{'READY' if answer['ready'] else 'NOT READY'}  {url} (HTTP {status})")
    for reason in answer["reasons"]:
        print(f"  {reason}")
    return code


def _is_report_list(data: Any) -> bool:
    return isinstance(data, list) and all(
        isinstance(item, dict) and item.get("severity") in _EXIT_BY_SEVERITY for item in data
    )
