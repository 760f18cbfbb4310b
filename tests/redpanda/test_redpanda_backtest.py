"""A backtest runs in one process on the simulated clock: a transport between processes is
refused with the fix, rather than giving a result without the stages' work (it used to end
with the strategies' ticks still on the broker, and no fill)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tradeloom
from tradeloom.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "orcl-1995-2014.txt"
REFUSED = (
    "a backtest runs every stage in one process on the simulated clock, which a transport "
    "between processes ('redpanda') cannot follow: backtest with the in-process transport, "
    "the default (leave out [pipeline] transport and the [transport] table)"
)


def test_a_backtest_on_the_broker_transport_is_a_config_error() -> None:
    settings = {
        "pipeline": {"transport": "redpanda"},
        "transport": {"bootstrap_servers": "127.0.0.1:9"},  # never reached
        "feed": {
            "name": "replay",
            "params": {"path": str(DATA), "format": "yahoo", "instrument": "ORCL"},
        },
        "strategies": [{"name": "sma_cross"}],
    }
    with pytest.raises(ConfigError) as refused:
        tradeloom.backtest(settings)
    assert str(refused.value) == REFUSED


CONFIG = f"""
[pipeline]
transport = "redpanda"

[transport]
bootstrap_servers = "127.0.0.1:9"

[feed]
name = "replay"
params = {{ path = "{DATA}", format = "yahoo", instrument = "ORCL" }}

[[strategies]]
name = "sma_cross"
"""


def backtest_into(tmp_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``tradeloom backtest`` of the configuration above, results to ``out``."""
    config = tmp_path / "tradeloom.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "tradeloom.cli", "backtest", "-c", str(config), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_says_how_to_backtest_it(tmp_path: Path) -> None:
    refused = backtest_into(tmp_path, tmp_path / "results" / "out")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"tradeloom: error: {REFUSED}"
    # Nothing was written: the directories it made for the results are gone again.
    assert not (tmp_path / "results").exists()


def test_an_output_directory_that_was_there_stays(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    refused = backtest_into(tmp_path, out)
    assert refused.returncode == 1 and REFUSED in refused.stderr
    assert out.is_dir()
