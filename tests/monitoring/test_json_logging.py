"""JSON log lines: event ids and instruments on lines about events; secrets never in clear."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr
from tradeloom_monitoring_testplugin import BuyOnce, TickFeed
from uuid6 import uuid7

import tradeloom
from tradeloom import MarketTick, Pipeline, Rejection, Side, Signal
from tradeloom.settings import load_settings
from tradeloom_health.logs import JsonFormatter, event_fields

HERE = Path(__file__).resolve().parent
T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
SECRET = "s3cr3t-T0KEN-never-logged"


def tick() -> MarketTick:
    return MarketTick(event_id=uuid7(), ts=T0, instrument="INFY", last_price=Decimal("1500.05"))


@pytest.fixture
def json_log() -> Any:
    """A JSON handler on the ``tradeloom`` logger; yields a function returning parsed lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tradeloom")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    lines.raw = stream  # type: ignore[attr-defined]
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_event_id_and_instrument_from_extra_or_arguments(json_log: Any) -> None:
    log = logging.getLogger("tradeloom.test")
    event = tick()
    log.info("price %s", event.last_price, extra={"event": event})
    log.warning("odd tick %s", event)
    signal = Signal(
        event_id=uuid7(), ts=T0, strategy_id="s", instrument="TCS", side=Side.SELL, quantity=1
    )
    rejection = Rejection(
        event_id=uuid7(), ts=T0, signal=signal, validator="no_short", reason="no position"
    )
    log.info("rejected", extra=event_fields(rejection))
    log.info("explicit", extra={"event_id": "abc", "instrument": "X"})
    log.info("not about an event")

    first, second, third, fourth, fifth = json_log()
    assert first["message"] == "price 1500.05"
    assert (first["event_id"], first["instrument"]) == (str(event.event_id), "INFY")
    assert first["event_type"] == "market_tick" and first["level"] == "INFO"
    assert first["logger"] == "tradeloom.test" and first["ts"].endswith("+00:00")
    assert (second["event_id"], second["instrument"]) == (str(event.event_id), "INFY")
    assert (third["event_id"], third["instrument"]) == (str(rejection.event_id), "TCS")
    assert (fourth["event_id"], fourth["instrument"]) == ("abc", "X")
    assert "event_id" not in fifth and "instrument" not in fifth


def test_any_field_type_is_written(json_log: Any) -> None:
    log = logging.getLogger("tradeloom.test")
    log.info(
        "values",
        extra={
            "price": Decimal("0.1000000000000000000001"),
            "id": uuid7(),
            "when": T0,
            "side": Side.BUY,
            "tick": tick(),
            "raw": b"\xff\x00bytes",
            "ratio": float("nan"),
            "things": {1, 2},
            "obj": object(),
        },
    )
    # Formatted directly: pytest's own capture handlers would raise on this record.
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "bad %d format", ("x",), None)
    bad_format = json.loads(JsonFormatter().format(record))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    values, failed = json_log()
    assert values["price"] == "0.1000000000000000000001"  # exact, not a float
    assert values["when"] == "2024-01-02T09:30:00+00:00" and values["side"] == "buy"
    assert values["tick"]["last_price"] == "1500.05" and values["ratio"] == "nan"
    assert values["obj"].startswith("<object object")
    assert "arguments could not be formatted" in bad_format["message"]
    assert "ValueError: boom" in failed["exc_info"]


def test_secrets_in_settings_never_reach_the_log(tmp_path: Path, json_log: Any) -> None:
    config = tmp_path / "tradeloom.toml"
    config.write_text(f'[monitoring]\nhttp_port = 0\nauth_token = "{SECRET}"\n')
    settings = load_settings(config)
    assert settings.monitoring.auth_token == SecretStr(SECRET)

    log = logging.getLogger("tradeloom.test")
    log.info("settings: %s", settings)
    log.info("settings %r", settings, extra={"settings": settings})
    log.info("token", extra={"token": settings.monitoring.auth_token})
    log.info("monitoring", extra={"monitoring": settings.monitoring.model_dump()})
    feed = TickFeed(count=2)
    pipeline = Pipeline(settings, mode="live", feed=feed, strategies={"b": BuyOnce()})
    anyio.run(pipeline.run)  # the monitor logs its settings at debug level

    text = json_log.raw.getvalue()
    assert SECRET not in text
    lines = json_log()
    assert lines[1]["settings"]["monitoring"]["auth_token"] == "**********"
    assert lines[2]["token"] == "**********"
    assert lines[3]["monitoring"]["auth_token"] == "**********"
    assert any(line["message"].startswith("monitoring settings:") for line in lines)
    assert any(line["message"].startswith("serving /health, /ready and /metrics") for line in lines)


def _tradeloom_command() -> list[str]:
    script = Path(sys.executable).with_name("tradeloom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tradeloom.cli"]


@pytest.mark.parametrize("how", ["flag", "settings"])
def test_tradeloom_run_logs_json(tmp_path: Path, how: str) -> None:
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        "[feed]\n"
        'name = "test_ticks"\n'
        "params = { count = 4 }\n"
        "[[strategies]]\n"
        'name = "buy_once"\n'
        "[executor]\n"
        'name = "paper"\n'
        'params = { fill_at = "last" }\n'
        "[monitoring]\n"
        "http_port = 0\n"
        f'auth_token = "{SECRET}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    command = [*_tradeloom_command(), "-vv", "-p", "tradeloom_monitoring_testplugin", "run"]
    command += ["-c", str(config)]
    if how == "flag":
        command.append("--log-json")
    else:
        env["TRADELOOM_MONITORING__LOG_JSON"] = "true"
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    buying = [line for line in lines if line["message"] == "buying on ACME"]
    assert len(buying) == 1
    assert buying[0]["instrument"] == "ACME" and len(buying[0]["event_id"]) == 36
    serving = [line for line in lines if line["message"].startswith("serving /health")]
    assert serving and serving[0]["url"].startswith("http://127.0.0.1:")
    if how == "flag":  # from the start: every line on standard error is JSON
        assert len(lines) == len(done.stderr.splitlines())


def test_the_command_lines_own_error_lines_are_json_too(tmp_path: Path) -> None:
    (tmp_path / "boom_strategy.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "class Boom(Strategy):\n"
        "    def on_tick(self, tick, ctx):\n"
        "        raise RuntimeError('kaboom')\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'boom': Boom}\n"
    )
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        '[feed]\nname = "test_ticks"\nparams = { count = 4 }\n[[strategies]]\nname = "boom"\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{tmp_path}"}
    command = [*_tradeloom_command(), "-p", "tradeloom_monitoring_testplugin", "-p"]
    command += ["boom_strategy", "backtest", "-c", str(config), "--out", "o", "--log-json"]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path, check=False
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every one is JSON
    said = [line for line in lines if line["logger"] == "tradeloom.cli"]
    assert said[0]["level"] == "ERROR"
    assert said[0]["message"].startswith("error: strategy 'boom' raised on market_tick")
    assert said[1]["message"].startswith(f"raised at {tmp_path / 'boom_strategy.py'}:4 in on_tick")


def test_a_dead_letters_line_carries_its_parts_as_fields(json_log: Any, tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    long_bad = "x" * 300
    prices.write_text(
        "instrument,ts,last_price\n"
        "INFY,2024-01-02T09:30:00Z,1500.05\n"
        "INFY,2024-01-02T09:30:01Z,not-a-price\n"
        f"INFY,2024-01-02T09:30:02Z,{long_bad}\n"
        "INFY,2024-01-02T09:30:03Z,1500.10\n"
    )
    columns = {"instrument": "instrument", "ts": "ts", "last_price": "last_price"}
    tradeloom.backtest(
        {
            "feed": {"name": "replay", "params": {"path": str(prices), "columns": columns}},
            "strategies": [{"name": "sma_cross", "params": {"fast": 1, "slow": 2}}],
        }
    )
    lines = [line for line in json_log() if line["message"].startswith("bad input from")]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "WARNING"
    assert (first["source"], first["location"], first["error_type"]) == (
        str(prices),
        "line 3",
        "bad_row",
    )
    assert first["reason"] == "column 'last_price': 'not-a-price' is not a number"
    assert first["raw"] == "INFY,2024-01-02T09:30:01Z,not-a-price"
    assert "key" not in first  # a file's row has no record key
    assert second["raw"] == ("INFY,2024-01-02T09:30:02Z," + long_bad)[:200] + "..."
