"""What ``tradeloom backtest`` prints for a replay feed that cannot start: one clean line,
as a user runs it (in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
[feed]
name = "replay"

[feed.params]
path = "{path}"
instrument = "X"
columns = {{ ts = "ts", last_price = "px" }}
{extra}

[[strategies]]
name = "sma_cross"
id = "sma"
params = {{ fast = 2, slow = 3, quantity = 1 }}

[executor]
name = "paper"

[persistence]
name = "memory"
"""


def backtest(tmp_path: Path, path: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "ticks.csv").write_text("ts,px\n2024-01-02T10:00:00,10\n", encoding="utf-8")
    (tmp_path / "data").mkdir()
    config = tmp_path / "cfg.toml"
    config.write_text(CONFIG.format(path=path, extra=extra), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "tradeloom.cli", "backtest", "-c", str(config), "--out", "o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("path", "extra", "message"),
    [
        ("nope.csv", "", "file not found: nope.csv (resolved from the current directory {cwd})"),
        (
            "data",
            "",
            "path is a directory, not a file: data (resolved from the current directory {cwd})",
        ),
        (
            "ticks.csv",
            'timestamp_format = "%Q"',
            "timestamp_format '%Q' is not a usable strptime pattern: 'Q' is a bad directive "
            "in format '%Q' (see the format codes of Python's datetime.strptime; epoch numbers "
            "are 'unix' or 'unix_ms')",
        ),
    ],
    ids=["missing file", "directory", "bad timestamp_format"],
)
def test_a_feed_that_cannot_start_is_one_configuration_error(
    tmp_path: Path, path: str, extra: str, message: str
) -> None:
    done = backtest(tmp_path, path, extra)
    assert done.returncode == 1, done.stderr
    first = done.stderr.splitlines()[0]
    cwd = tmp_path.resolve()
    assert first == f"tradeloom: error: feed 'replay' (plugin 'replay'): {message}".format(cwd=cwd)
    assert "Errno" not in done.stderr
