"""The command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import platform
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGIN = REPO / "tests" / "fixtures" / "tradeloom-example-strategy"


def tradeloom(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradeloom.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def backtest_toml(tmp_path: Path, data: Path, strategy: str, extra: str = "") -> Path:
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
params = {{ path = "{data}", format = "yahoo", instrument = "ORCL" }}

[[strategies]]
name = "{strategy}"

[executor]
name = "paper"
params = {{ commission_bps = 10 }}

[persistence]
name = "sqlite"
params = {{ path = "{tmp_path / "state.sqlite"}" }}
{extra}
"""
    )
    return config


def test_demo_runs_with_no_arguments_and_writes_results(tmp_path: Path) -> None:
    done = tradeloom("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "final equity" in done.stdout and "195 (97 round trips)" in done.stdout
    result = json.loads((tmp_path / "tradeloom-demo" / "result.json").read_text())
    assert result["summary"]["trade_count"] == 195
    assert result["summary"]["market_events"] == 5036
    assert (tmp_path / "tradeloom-demo" / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tradeloom("demo", cwd=tmp_path)  # starts from an empty book every time
    assert again.returncode == 0
    assert (
        json.loads((tmp_path / "tradeloom-demo" / "result.json").read_text())["summary"][
            "final_equity"
        ]
        == result["summary"]["final_equity"]
    )


@pytest.mark.skipif(os.name != "posix", reason="flock as POSIX has it")
def test_a_demo_leaves_the_state_of_a_demo_running_in_its_folder_alone(tmp_path: Path) -> None:
    # It deleted every demo.sqlite* file, the running one's lock too: both then wrote one
    # state file.
    import fcntl

    out = tmp_path / "tradeloom-demo"
    out.mkdir()
    (out / "demo.sqlite").write_bytes(b"the running demo's")
    fd = os.open(out / "demo.sqlite.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the running demo holds it
        done = tradeloom("demo", cwd=tmp_path)
    finally:
        os.close(fd)
    assert done.returncode == 1
    assert done.stderr == (
        f"tradeloom: error: another tradeloom demo is running with {Path('tradeloom-demo')}"
        "/demo.sqlite; wait for it to end, or give this one another --out\n"
    )
    assert (out / "demo.sqlite").read_bytes() == b"the running demo's"


def test_strategy_from_a_separately_installed_package(tmp_path: Path, shared_data: Path) -> None:
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(EXAMPLE_PLUGIN),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": str(site)}

    listing = tradeloom("plugins", "--json", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert plugins["example_strategy"]["distribution"] == "tradeloom-example-strategy"
    assert plugins["example_strategy"]["version"] == "0.3.0"
    assert plugins["example_strategy"]["registers"] == {"strategy": ["breakout"]}
    text = tradeloom("plugins", cwd=tmp_path, env=env).stdout
    assert "tradeloom-example-strategy 0.3.0" in text and "breakout" in text

    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "breakout")
    done = tradeloom(
        "backtest", "-c", str(config), "--out", str(tmp_path / "out"), cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["summary"]["trade_count"] > 10
    assert {f["strategy_id"] for f in result["fills"]} == {"breakout"}
    assert {f["quantity"] for f in result["fills"]} == {"5"}


def test_bad_csv_rows_are_reported_and_the_rest_is_used(tmp_path: Path, shared_data: Path) -> None:
    rows = (shared_data / "orcl-1995-2014.txt").read_text().splitlines()
    rows[100] = rows[100].replace(rows[100].split(",")[4], "-3.5", 1)  # negative close
    rows[200] = rows[200].replace(rows[200].split(",")[1], "abc", 1)  # non-numeric open
    rows[300] = rows[300].replace(rows[300].split(",")[2], "NaN", 1)
    data = tmp_path / "orcl-damaged.csv"
    data.write_text("\n".join(rows) + "\n")
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = backtest_toml(
        tmp_path, data, "sma_cross", extra=f'[pipeline]\ndead_letter_file = "{dead_letters}"\n'
    )
    done = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["summary"]["market_events"] == 5036 - 3
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert [letter["location"] for letter in letters] == ["line 101", "line 201", "line 301"]
    assert letters[0]["raw"].strip() == rows[100] and "-3.5" in letters[0]["reason"]
    assert [d["location"] for d in result["dead_letters"]] == ["line 101", "line 201", "line 301"]
    assert "bad input       3" in done.stdout


def test_a_backtest_whose_every_row_is_bad_fails(tmp_path: Path, shared_data: Path) -> None:
    # Daily bars read as the minute format: each row is one field short.
    config = tmp_path / "t.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
params = {{ path = "{shared_data / "orcl-1995-2014.txt"}", format = "minute", instrument = "X" }}
[[strategies]]
name = "sma_cross"
"""
    )
    done = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    assert (
        "tradeloom: error: every input was bad (5,036 set aside, see the dead letters): nothing "
        "was backtested; is the feed's format right?"
    ) in done.stderr
    assert "bad input       5,036" in done.stdout  # the result is still written and shown
    assert (tmp_path / "o" / "result.json").is_file()


def test_stop_on_bad_row_names_the_line(tmp_path: Path, shared_data: Path) -> None:
    rows = (shared_data / "orcl-1995-2014.txt").read_text().splitlines()[:50]
    rows[10] = rows[10].replace(rows[10].split(",")[4], "-1", 1)
    data = tmp_path / "bad.csv"
    data.write_text("\n".join(rows) + "\n")
    config = tmp_path / "t.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
params = {{ path = "{data}", format = "yahoo", instrument = "ORCL", on_error = "stop" }}
[[strategies]]
name = "sma_cross"
"""
    )
    done = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    assert "line 11" in done.stderr and str(data) in done.stderr


def test_unknown_plugin_in_config_is_a_clear_error(tmp_path: Path, shared_data: Path) -> None:
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "no_such_strategy")
    done = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1
    line = next(line for line in done.stderr.splitlines() if "unknown strategy" in line)
    named, _, registered = line.partition("; registered strategies: ")
    assert named == "tradeloom: error: unknown strategy 'no_such_strategy'"
    # Every strategy installed in this environment is listed (a user's own plugin too).
    assert "sma_cross" in registered.split(", ")
    assert "Traceback" not in done.stderr


def test_plugin_module_raising_on_import_is_listed_as_failed(tmp_path: Path) -> None:
    (tmp_path / "explodes.py").write_text("raise ImportError('needs libfoo 2.0')\n")
    done = tradeloom("-p", "explodes", "plugins", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stderr  # a CI check of the plugins catches it
    assert done.stderr == "tradeloom: error: plugin(s) failed to load: explodes\n"
    line = next(row for row in done.stdout.splitlines() if row.startswith("explodes"))
    assert "failed" in line
    assert "ImportError: needs libfoo 2.0" in done.stdout
    assert "sma_cross" in done.stdout  # everything else is still listed


def test_ctrl_c_while_plugins_load_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # As a Ctrl-C pressed while a slow plugin imports.
    (tmp_path / "slow.py").write_text("raise KeyboardInterrupt\n")
    done = tradeloom("-p", "slow", "plugins", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 130
    assert done.stderr == "tradeloom: interrupted\n"


def test_an_error_of_several_lines_keeps_the_listing_in_its_columns(tmp_path: Path) -> None:
    (tmp_path / "explodes.py").write_text("raise ImportError('needs libfoo 2.0\\nor libbar')\n")
    done = tradeloom("-p", "explodes", "plugins", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    lines = done.stdout.splitlines()
    at = lines.index(next(row for row in lines if row.startswith("explodes")))
    assert lines[at + 1].startswith("    error          ImportError: needs libfoo 2.0")
    assert lines[at + 2].startswith(" " * 19 + "or libbar (")  # then where it was raised


@pytest.mark.parametrize("where", ["before the command", "after it"])
def test_blocking_a_plugin_on_the_command_line(tmp_path: Path, where: str) -> None:
    command = ["plugins", "--json"]
    args = (
        ["-p", "no:validators", *command]
        if where == "before the command"
        else [*command, "-p", "no:validators"]
    )
    done = tradeloom(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert plugins["validators"]["status"] == "blocked"
    assert plugins["paper"]["status"] == "loaded"
    assert json.loads(done.stdout)["warnings"] == []


def test_with_autoload_off_the_listing_says_how_to_load_a_plugin_not_that_it_failed(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.toml").write_text('[plugins]\nautoload = false\nenable = ["paper"]\n')
    done = tradeloom("plugins", "-c", "t.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stdout
    lines = done.stdout.splitlines()
    sqlite = lines.index(next(line for line in lines if line.startswith("sqlite ")))
    assert lines[sqlite].endswith("not loaded")
    assert (
        lines[sqlite + 1] == "    not loaded     autoload is off: add 'sqlite' to [plugins] enable"
    )
    assert next(line for line in lines if line.startswith("paper ")).endswith("loaded")


def _installed_plugin_that_exits_on_import(tmp_path: Path) -> dict[str, str]:
    """An installed distribution (on PYTHONPATH) whose plugin module calls sys.exit() when it
    is imported: the environment that finds it."""
    site = tmp_path / "site"
    info = site / "exits_on_import-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exits-on-import\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tradeloom]\nexits = exits_on_import\n")
    (site / "exits_on_import.py").write_text(
        "import pathlib, sys\n"
        "pathlib.Path(__file__).with_name('IMPORTED').touch()\n"
        "sys.exit('exits_on_import imported')\n"
    )
    return {"PYTHONPATH": str(site)}


def _imported(env: dict[str, str]) -> bool:
    marker = Path(env["PYTHONPATH"]) / "IMPORTED"
    found = marker.exists()
    marker.unlink(missing_ok=True)
    return found


def test_a_plugin_exiting_on_import_is_listed_as_failed(tmp_path: Path) -> None:
    env = _installed_plugin_that_exits_on_import(tmp_path)
    done = tradeloom("plugins", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert _imported(env)  # the check of the tests below can fail
    line = next(row for row in done.stdout.splitlines() if row.startswith("exits "))
    assert "failed" in line
    assert "sys.exit('exits_on_import imported') while being imported" in done.stdout
    assert "sma_cross" in done.stdout  # everything else is still listed


@pytest.mark.parametrize("how", ["block", "environment", "autoload off"])
def test_a_plugin_blocked_by_the_configuration_is_never_imported(
    tmp_path: Path, shared_data: Path, how: str
) -> None:
    env = _installed_plugin_that_exits_on_import(tmp_path)
    extra = {
        "block": '[plugins]\nblock = ["exits"]\n',
        "environment": "",
        "autoload off": (
            '[plugins]\nautoload = false\nenable = ["replay", "strategies", "paper", '
            '"sqlite", "decimal", "uuid7", "memory", "validators", "health"]\n'
        ),
    }[how]
    if how == "environment":
        env["TRADELOOM_PLUGINS__BLOCK"] = '["exits"]'
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross", extra)
    listed = tradeloom("plugins", "-c", str(config), cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert not _imported(env)
    line = next(row for row in listed.stdout.splitlines() if row.startswith("exits "))
    assert line.endswith("blocked" if how != "autoload off" else "not loaded")
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert not _imported(env)
    if how == "environment":  # also for a command given no configuration file
        listed = tradeloom("plugins", cwd=tmp_path, env=env)
        assert listed.returncode == 0 and not _imported(env)
    else:  # also when another setting is wrong: that error is the one reported
        env["TRADELOOM_PORTFOLIO__STARTING_CASH"] = "-5"
        done = tradeloom("backtest", "--conf", str(config), "--out", "p", cwd=tmp_path, env=env)
        assert done.returncode == 1
        assert not _imported(env) and "starting_cash" in done.stderr


@pytest.mark.parametrize("flags", [["-vp", "no:validators"], ["-vpno:validators"]])
def test_p_combined_with_v_is_read(tmp_path: Path, flags: list[str]) -> None:
    done = tradeloom(*flags, "plugins", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert plugins["validators"]["status"] == "blocked"


def test_blocking_a_plugin_no_one_has_warns_once(tmp_path: Path, shared_data: Path) -> None:
    listed = tradeloom("-p", "no:validatrs", "plugins", cwd=tmp_path)
    assert listed.returncode == 0
    assert "warning: blocked plugin 'validatrs' matches no installed plugin" in listed.stderr
    assert "(did you mean 'validators'?)" in listed.stderr
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    done = tradeloom(
        "-p", "no:validatrs", "backtest", "-c", str(config), "--out", "o", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("blocked plugin 'validatrs' matches no installed plugin") == 1


@pytest.mark.parametrize(
    "command", [["backtest", "-c", "missing.toml", "--out", "o"], ["run", "-c", "missing.toml"]]
)
def test_missing_config_file(tmp_path: Path, command: list[str]) -> None:
    done = tradeloom(*command, cwd=tmp_path)
    assert done.returncode == 1
    assert "configuration file not found: missing.toml" in done.stderr


def test_a_corrupt_state_file_stops_the_run_and_is_never_reset(
    tmp_path: Path, shared_data: Path
) -> None:
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    first = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    state = tmp_path / "state.sqlite"
    for leftover in tmp_path.glob("state.sqlite-*"):
        leftover.unlink()  # WAL files: the damage must be in the main file
    damaged = state.read_bytes()[: state.stat().st_size // 2]
    state.write_bytes(damaged)
    done = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert done.returncode == 1
    assert str(state) in done.stderr
    assert "Traceback" not in done.stderr
    assert state.read_bytes() == damaged  # left as it was for someone to look at


def test_a_backtest_refuses_stored_state_unless_told_to_resume(
    tmp_path: Path, shared_data: Path
) -> None:
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    first = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith(
        f"tradeloom: error: the 'sqlite' persistence at {tmp_path / 'state.sqlite'} already holds "
        "state from an earlier run (1 portfolio snapshot, 195 fills); a backtest starts from "
        "empty books: delete that state or point [persistence] at a new location to start over, "
        "or resume from it (tradeloom backtest --resume, resume=True)"
    )
    # The same data: nothing after the stored state, so the first run's results stay.
    written = (tmp_path / "a" / "result.json").read_bytes()
    resumed = tradeloom(
        "backtest", "-c", str(config), "--out", str(tmp_path / "a"), "--resume", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "a" / "result.json").read_bytes() == written
    assert (
        f"nothing after the stored state was backtested: {tmp_path / 'a'} was left as it was"
        in (resumed.stdout)
    )
    elsewhere = tradeloom(
        "backtest", "-c", str(config), "--out", str(tmp_path / "c"), "--resume", cwd=tmp_path
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert list((tmp_path / "c").iterdir()) == []
    assert (
        f"nothing after the stored state was backtested: nothing written to {tmp_path / 'c'}"
        in (elsewhere.stdout)
    )
    first_summary = json.loads(written)["summary"]
    final = Decimal(first_summary["final_equity"])
    assert f"starting equity {final:,.2f}" in resumed.stdout
    assert "market events   0" in resumed.stdout


def test_run_reports_a_failing_strategy_as_an_error_not_a_traceback(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "explode_on_bar.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "class Explode(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        raise RuntimeError('kaboom')\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'explode': Explode}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "explode",
        extra='[plugins]\nmodules = ["explode_on_bar"]\n',
    )
    done = tradeloom("run", "-c", str(config), cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1
    assert "tradeloom: error: strategy 'explode' raised on bar" in done.stderr
    assert "RuntimeError: kaboom" in done.stderr
    assert "Traceback" not in done.stderr and "Exception Group" not in done.stderr
    # Where in the strategy: the line that raised, and the whole traceback with -v.
    assert f"raised at {tmp_path / 'explode_on_bar.py'}:4 in on_bar" in done.stderr
    verbose = tradeloom(
        "-v", "run", "-c", str(config), cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "raise RuntimeError('kaboom')" in verbose.stderr


def test_a_feed_plugin_that_raises_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "rowfeed.py").write_text(
        "from datetime import datetime, timedelta, UTC\n"
        "from tradeloom import MarketTick, hookimpl\n"
        "def events(ctx):\n"
        "    for i in range(40):\n"
        "        ts = datetime(2024, 1, 2, tzinfo=UTC) + timedelta(seconds=i)\n"
        "        yield MarketTick(event_id=ctx.ids.new_id(), ts=ts, instrument='A',"
        " last_price=100 + i % 7)\n"
        "    raise KeyError(\"column 'close'\")\n"
        "class RowFeed:\n"
        "    events = staticmethod(events)\n"
        "@hookimpl\ndef tradeloom_register_feeds():\n    return {'rows': RowFeed}\n"
    )
    config = tmp_path / "feed.toml"
    config.write_text(
        '[feed]\nname = "rows"\n[[strategies]]\nname = "sma_cross"\n'
        "params = { fast = 2, slow = 5, quantity = 1 }\n"
        f'[persistence]\nname = "sqlite"\nparams = {{ path = "{tmp_path / "s.sqlite"}" }}\n'
    )
    env = {"PYTHONPATH": str(tmp_path)}
    done = tradeloom(
        "-p", "rowfeed", "backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env
    )
    assert done.returncode == 1
    assert "tradeloom: error: feed RowFeed raised KeyError: \"column 'close'\"" in done.stderr
    assert f"raised at {tmp_path / 'rowfeed.py'}:7 in events" in done.stderr
    assert "its state up to the failure is saved" in done.stderr
    assert "Traceback" not in done.stderr
    # What it did until then is written and shown, marked as failed.
    assert "Backtest of" in done.stdout and "(failed)" in done.stdout
    summary = json.loads((tmp_path / "o" / "result.json").read_text())["summary"]
    assert summary["failed"] == "feed RowFeed raised KeyError: \"column 'close'\""
    assert summary["market_events"] == 40 and summary["trade_count"] > 0
    assert (tmp_path / "o" / "equity.png").exists()


def test_a_plugin_failing_in_a_lifecycle_hook_is_named_not_a_traceback(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "lifeboom.py").write_text(
        "from tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_pipeline_started(pipeline):\n"
        "    raise RuntimeError('no dashboard')\n"
    )
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    env = {"PYTHONPATH": str(tmp_path)}
    done = tradeloom(
        "-p", "lifeboom", "backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env
    )
    assert done.returncode == 1
    assert (
        "tradeloom: error: plugin 'lifeboom' failed in tradeloom_pipeline_started: "
        "RuntimeError: no dashboard"
    ) in done.stderr
    assert f"raised at {tmp_path / 'lifeboom.py'}:4 in tradeloom_pipeline_started" in done.stderr
    assert "Traceback" not in done.stderr
    # It failed before anything happened, so the next backtest finds no state to refuse.
    again = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_a_plugin_module_that_cannot_be_loaded_stops_every_command_but_the_listing(
    tmp_path: Path,
) -> None:
    done = tradeloom(
        "-p", "no_such_plugin_module", "demo", "--out", str(tmp_path / "o"), cwd=tmp_path
    )
    assert done.returncode == 2
    assert (
        "plugin module 'no_such_plugin_module' cannot be loaded: no module named "
        "'no_such_plugin_module' in the current directory, PYTHONPATH or the installed packages"
    ) in done.stderr
    assert not (tmp_path / "o").exists()
    listed = tradeloom("-p", "no_such_plugin_module", "plugins", cwd=tmp_path)
    assert listed.returncode == 1 and "no_such_plugin_module" in listed.stdout


def test_a_configured_plugin_module_that_cannot_be_loaded_stops_the_run(
    tmp_path: Path, shared_data: Path
) -> None:
    # Named in [plugins] modules as -p names one: the run does not go on without it, to fail
    # on the strategy it registers (or on something unrelated).
    # Not the README's my_strategies, which a reader following it may have installed.
    extra = '[plugins]\nmodules = ["tl_test_strategies_nowhere"]\n'
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "momentum", extra)
    elsewhere = tmp_path / "elsewhere"  # run from another directory than the module's
    elsewhere.mkdir()
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=elsewhere)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "tradeloom: error: [plugins] modules: plugin module 'tl_test_strategies_nowhere' cannot "
        "be loaded: no module named 'tl_test_strategies_nowhere' in the current directory, "
        "PYTHONPATH or the installed packages"
    )
    assert "unknown strategy" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state.sqlite").exists()


def test_an_output_path_that_cannot_be_a_directory_is_refused_before_the_run(
    tmp_path: Path, shared_data: Path
) -> None:
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    (tmp_path / "taken").write_text("a file, not a directory\n")
    done = tradeloom("backtest", "-c", str(config), "--out", str(tmp_path / "taken"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"--out {tmp_path / 'taken'}: exists and is not a directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state.sqlite").exists()  # nothing ran, so a re-run is not refused
    demo = tradeloom("demo", "--out", str(tmp_path / "taken" / "sub"), cwd=tmp_path)
    assert demo.returncode == 1 and "cannot create the directory" in demo.stderr
    empty = tradeloom("backtest", "-c", str(config), "--out", " ", cwd=tmp_path)
    assert empty.returncode == 1
    assert "--out: give a directory (an empty path would mean the current one)" in empty.stderr


def test_a_directory_given_as_the_configuration_file(tmp_path: Path) -> None:
    done = tradeloom("backtest", "-c", str(tmp_path), "--out", "o", cwd=tmp_path)
    assert done.returncode == 1
    assert f"configuration file {tmp_path} is a directory, not a file" in done.stderr


def test_a_plugin_adding_a_command_that_exists_cannot_take_the_command_line_down(
    tmp_path: Path,
) -> None:
    (tmp_path / "cmdboom.py").write_text(
        "from tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_add_commands(subparsers):\n"
        "    subparsers.add_parser('demo', help='a demo of my own')\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    for command in (["--help"], ["plugins"]):
        done = tradeloom("-p", "cmdboom", *command, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert (
            "tradeloom: warning: plugin 'cmdboom' failed in tradeloom_add_commands, so its "
            "commands are missing: ArgumentError: argument COMMAND: conflicting subparser: demo"
        ) in done.stderr
        assert "Traceback" not in done.stderr
    # the built-in demo is the one that runs
    demo = tradeloom("-p", "cmdboom", "demo", "--help", cwd=tmp_path, env=env)
    assert "Backtests SMA(10/30) on bundled ORCL daily bars" in demo.stdout


@pytest.mark.parametrize("buffered", [True, False])
def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path, buffered: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeloom.cli", "plugins", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head` does once it has read enough
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert stderr == ""


def test_a_refused_float_points_at_the_strategy_line_not_pydantic(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "floaty.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "class Floaty(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        ctx.buy(bar.instrument, 1.5)\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'floaty': Floaty}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "floaty",
        extra='[plugins]\nmodules = ["floaty"]\n',
    )
    env = {"PYTHONPATH": str(tmp_path)}
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert (
        "ValueError: buy 'ORCL': quantity: float 1.5 is not accepted for money, prices or "
        "quantities; pass a Decimal, an int or a numeric string\n"
    ) in done.stderr
    assert "validation error for Signal" not in done.stderr  # one line, not pydantic's dump
    assert "errors.pydantic.dev" not in done.stderr
    assert f"raised at {tmp_path / 'floaty.py'}:4 in on_bar" in done.stderr


def test_a_configuration_error_has_no_raised_at_line(tmp_path: Path, shared_data: Path) -> None:
    config = backtest_toml(tmp_path, tmp_path / "missing.csv", "sma_cross")
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("tradeloom: error: feed 'replay' (plugin 'replay'): ")
    assert "raised at" not in done.stderr and "Traceback" not in done.stderr


def test_the_getting_started_walk_runs_as_written(tmp_path: Path) -> None:
    # The demo, then the configuration of the getting-started page, in the same directory:
    # the data file it names is the copy the demo wrote.
    demo = tradeloom("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "sample data     tradeloom-demo/orcl-1995-2014.csv" in demo.stdout
    page = (REPO / "docs" / "getting-started.md").read_text()
    config = page.split("```toml\n# tradeloom.toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "tradeloom.toml").write_text(config)
    done = tradeloom("backtest", "-c", "tradeloom.toml", "--out", "results/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "market events   5,036" in done.stdout
    readme = (REPO / "README.md").read_text()
    assert 'path = "tradeloom-demo/orcl-1995-2014.csv"' in readme
    # The page's Python runs after the CLI run, and again.
    script = page.split("The same from Python:\n\n```python\n", 1)[1].split("```", 1)[0]
    for _ in range(2):
        python = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
        )
        assert python.returncode == 0, python.stderr
        equity, drawdown, fills = python.stdout.split()
        assert int(fills) > 0 and Decimal(equity) > 0 and Decimal(drawdown) >= 0


def test_a_broken_pipe_that_is_not_standard_output_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pipefeed.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "from tradeloom.components import Feed\n"
        "class PipeFeed(Feed):\n"
        "    def events(self, ctx):\n"
        "        raise BrokenPipeError(32, 'the quote server hung up')\n"
        "@hookimpl\ndef tradeloom_register_feeds():\n    return {'pipefeed': PipeFeed}\n"
    )
    (tmp_path / "c.toml").write_text(
        '[feed]\nname = "pipefeed"\n[[strategies]]\nname = "sma_cross"\n'
        '[plugins]\nmodules = ["pipefeed"]\n'
    )
    done = tradeloom(
        "backtest", "-c", "c.toml", "--out", "o", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert done.returncode == 1
    assert (
        "tradeloom: error: feed PipeFeed raised BrokenPipeError: [Errno 32] the quote server "
        "hung up" in done.stderr
    )


def test_raised_at_skips_the_standard_library_for_the_strategy_line(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "jsonstrat.py").write_text(
        "import json\n"
        "from tradeloom import Strategy, hookimpl\n"
        "class Dumps(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        json.dumps(bar.close)\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'dumps': Dumps}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "dumps",
        extra='[plugins]\nmodules = ["jsonstrat"]\n',
    )
    env = {"PYTHONPATH": str(tmp_path)}
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert "TypeError: Object of type Decimal is not JSON serializable" in done.stderr
    assert f"raised at {tmp_path / 'jsonstrat.py'}:5 in on_bar" in done.stderr


def test_a_failed_backtest_says_its_state_is_saved_and_how_to_go_on(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "flaky.py").write_text(
        "import os\n"
        "from tradeloom import Strategy, hookimpl\n"
        "class Flaky(Strategy):\n"
        "    seen = 0\n"
        "    def on_bar(self, bar, ctx):\n"
        "        self.seen += 1\n"
        "        if self.seen == 1:\n"
        "            ctx.buy(bar.instrument, 1)\n"
        "        if self.seen == 1500 and os.environ.get('FLAKY') == '1':\n"
        "            raise RuntimeError('feed glitch')\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'flaky': Flaky}\n"
    )
    config = backtest_toml(
        tmp_path, shared_data / "orcl-1995-2014.txt", "flaky", '[plugins]\nmodules = ["flaky"]\n'
    )
    env = {"PYTHONPATH": str(tmp_path), "FLAKY": "1"}
    failed = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env)
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0].startswith("tradeloom: error: strategy 'flaky' raised on bar")
    assert lines[-1] == (
        "tradeloom: its state up to the failure is saved: once the cause is fixed, add --resume "
        "to the same command to continue from there (or delete that state to start over)"
    )
    env["FLAKY"] = "0"
    resumed = tradeloom(
        "backtest", "-c", str(config), "--out", "r", "--resume", cwd=tmp_path, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after" in resumed.stdout


def test_a_file_out_of_time_order_says_to_start_over_not_to_resume(tmp_path: Path) -> None:
    rows = [f"A,2024-01-01T00:{minute:02d}:00,{100 + minute % 7}" for minute in range(60)]
    rows += [f"B,2024-01-01T00:{minute:02d}:00,{50 + minute % 5}" for minute in range(60)]
    (tmp_path / "by-instrument.csv").write_text("sym,t,p\n" + "\n".join(rows) + "\n")
    (tmp_path / "c.toml").write_text(
        '[feed]\nname = "replay"\nparams = { path = "by-instrument.csv", '
        'columns = { instrument = "sym", ts = "t", last_price = "p" } }\n'
        '[[strategies]]\nname = "sma_cross"\nparams = { fast = 2, slow = 3 }\n'
        '[persistence]\nname = "sqlite"\nparams = { path = "state.sqlite" }\n'
    )
    done = tradeloom("backtest", "-c", "c.toml", "--out", "o", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        "tradeloom: error: feed ReplayFeed gave a market event for B at 2024-01-01T00:00:00+00:00 "
        "after one at 2024-01-01T00:59:00+00:00"
    )
    assert lines[-1] == (
        "tradeloom: its state up to the failure is saved, but it misses the events out of "
        "order: delete that state and run again once the events are in time order (--resume "
        "would skip them)"
    )


def _start_run(config: Path, where: Path, *options: str) -> subprocess.Popen[str]:
    """``tradeloom run -c config`` in ``where``, its plugin modules importable from there."""
    return subprocess.Popen(
        [sys.executable, "-m", "tradeloom.cli", "run", "-c", str(config), *options],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(where)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_sigterm_early_in_a_live_run_drains_and_saves(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "slowflip.py").write_text(
        "import time\n"
        "from tradeloom import Strategy, hookimpl\n"
        "class SlowFlip(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        time.sleep(0.005)\n"
        "        held = ctx.position(bar.instrument) + ctx.open_quantity(bar.instrument)\n"
        "        if held:\n"
        "            ctx.sell(bar.instrument, held)\n"
        "        else:\n"
        "            ctx.buy(bar.instrument, 1)\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'slow_flip': SlowFlip}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "slow_flip",
        extra='[plugins]\nmodules = ["slowflip"]\n',
    )
    text = config.read_text().replace(
        "params = { commission_bps = 10 }", 'params = { fill_at = "last" }'
    )
    config.write_text(text)
    running = _start_run(config, tmp_path)
    while not (tmp_path / "state.sqlite").exists() and running.poll() is None:
        time.sleep(0.02)
    time.sleep(1.0)  # some 200 bars into 5,000: far from the end
    running.send_signal(signal.SIGTERM)
    stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 0, stderr
    assert "tradeloom: SIGTERM: draining, then stopping" in stderr
    assert "final equity" in stdout and "market events" in stdout

    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        fills = db.execute("SELECT count(*) FROM fills").fetchone()[0]
        snapshots = db.execute("SELECT count(*) FROM snapshots").fetchone()[0]
    assert fills > 0 and snapshots == 1  # drained: the fills journaled, the book saved


@pytest.mark.skipif(os.name != "posix", reason="signals as POSIX has them")
def test_a_sigterm_while_the_run_is_being_set_up_stops_it_as_it_starts(tmp_path: Path) -> None:
    # A service manager may stop a run while its plugins build their components (a feed
    # connecting): that killed it silently with 143 before the handlers were installed.
    (tmp_path / "slow_to_build.py").write_text(
        "import pathlib, time\n"
        "from tradeloom import hookimpl\n"
        "from tradeloom.components import Feed\n"
        "from tradeloom.testing import ticks\n"
        "class SlowToBuild(Feed):\n"
        "    def __init__(self):\n"
        "        pathlib.Path('building').touch()\n"
        "        time.sleep(2)\n"
        "    async def events(self, ctx):\n"
        "        for tick in ticks('X', ['10', '11']):\n"
        "            yield tick\n"
        "@hookimpl\ndef tradeloom_register_feeds():\n    return {'slow_to_build': SlowToBuild}\n"
    )
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        '[plugins]\nmodules = ["slow_to_build"]\n[feed]\nname = "slow_to_build"\n'
        '[[strategies]]\nname = "sma_cross"\n'
    )
    running = _start_run(config, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "building").exists() and time.monotonic() < deadline:
            assert running.poll() is None, running.communicate()
            time.sleep(0.02)
        running.send_signal(signal.SIGTERM)
        stdout, stderr = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 0, stderr
    assert "tradeloom: SIGTERM: draining, then stopping" in stderr
    assert "market events   0" in stdout


@pytest.mark.skipif(os.name != "posix", reason="signals as POSIX has them")
@pytest.mark.parametrize("log_json", [False, True], ids=["plain", "json"])
def test_a_second_signal_stops_a_run_whose_strategy_blocks_at_once(
    tmp_path: Path, shared_data: Path, log_json: bool
) -> None:
    # A strategy blocking the event loop (a long computation) kept every signal waiting: four
    # SIGTERMs and SIGINTs did nothing for a minute, and nothing was said meanwhile.
    (tmp_path / "stuck.py").write_text(
        "import pathlib, time\n"
        "from tradeloom import Strategy, hookimpl\n"
        "class Stuck(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        pathlib.Path('blocking').touch()\n"
        "        time.sleep(60)\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'stuck': Stuck}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "stuck",
        extra='[plugins]\nmodules = ["stuck"]\n',
    )
    running = _start_run(config, tmp_path, *(["--log-json"] if log_json else []))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "blocking").exists() and time.monotonic() < deadline:
            assert running.poll() is None, running.communicate()
            time.sleep(0.05)
        running.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sent_again = time.monotonic()
        running.send_signal(signal.SIGTERM)
        _, stderr = running.communicate(timeout=30)
        stopped_after = time.monotonic() - sent_again
    finally:
        running.kill()
    assert running.returncode == 128 + signal.SIGTERM, stderr
    assert stopped_after < 10  # not the strategy's minute
    first = "SIGTERM: draining, then stopping (send it again to stop at once)"
    second = "SIGTERM again: stopping at once, without draining"
    if not log_json:
        assert f"tradeloom: {first}" in stderr
        assert f"tradeloom: {second}" in stderr
        return
    # Said as records too, while the strategy blocks the loop, and nothing but records.
    records = [json.loads(line) for line in stderr.splitlines()]
    said = [(r["logger"], r["level"], r["message"]) for r in records if "SIGTERM" in r["message"]]
    assert [message for _, _, message in said] == [first, said[1][2]]
    assert said[1][2].startswith(second)
    assert [(logger, level) for logger, level, _ in said] == [
        ("tradeloom.cli", "WARNING"),
        ("tradeloom.cli", "ERROR"),
    ]


@pytest.mark.parametrize("out", [True, False], ids=["out", "no-out"])
def test_a_live_run_that_fails_still_shows_and_writes_what_it_did(
    tmp_path: Path, out: bool
) -> None:
    (tmp_path / "losing_feed.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "from tradeloom.components import Feed\n"
        "from tradeloom.testing import ticks\n"
        "class LosesItsSource(Feed):\n"
        "    async def events(self, ctx):\n"
        "        for tick in ticks('ORCL', ['10', '11', '12', '13']):\n"
        "            yield tick\n"
        "        raise ConnectionError('the source went away')\n"
        "@hookimpl\ndef tradeloom_register_feeds():\n    return {'losing': LosesItsSource}\n"
        "class BuyOnce(Strategy):\n"
        "    def on_tick(self, tick, ctx):\n"
        "        if not ctx.position('ORCL') and not ctx.open_quantity('ORCL'):\n"
        "            ctx.buy('ORCL', 1)\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    return {'buy_once': BuyOnce}\n"
    )
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        '[plugins]\nmodules = ["losing_feed"]\n'
        '[feed]\nname = "losing"\n'
        '[[strategies]]\nname = "buy_once"\n'
        '[executor]\nname = "paper"\nparams = { fill_at = "last" }\n'
        f'[persistence]\nname = "sqlite"\nparams = {{ path = "{tmp_path / "state.sqlite"}" }}\n'
    )
    running = _start_run(config, tmp_path, *(["--out", "o"] if out else []))
    stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 1, stderr
    assert "tradeloom: error: feed LosesItsSource raised ConnectionError" in stderr
    assert stdout.startswith("Run (failed)\n"), stdout
    assert "market events   4" in stdout and "fills           1" in stdout
    if out:
        result = json.loads((tmp_path / "o" / "result.json").read_text())
        assert "the source went away" in result["summary"]["failed"]
        assert result["summary"]["market_events"] == 4


def test_the_tradeloom_command_finds_a_plugin_module_in_the_current_directory(
    tmp_path: Path, shared_data: Path
) -> None:
    # The installed console script, not `python -m` (which puts the directory on the path).
    command = Path(sys.executable).with_name("tradeloom")
    assert command.exists(), (
        f"the tradeloom console script is not installed next to {sys.executable}"
    )
    (tmp_path / "tl_cli_strategies.py").write_text(
        "from tradeloom import Strategy, hookimpl\n"
        "class BuyOnce(Strategy):\n"
        "    def on_bar(self, bar, ctx):\n"
        "        if not ctx.position('ORCL') and not ctx.open_quantity('ORCL'):\n"
        "            ctx.buy('ORCL', 1)\n"
        "@hookimpl\n"
        "def tradeloom_register_strategies():\n"
        "    return {'buy_once': BuyOnce}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "buy_once",
        extra='[plugins]\nmodules = ["tl_cli_strategies"]\n',
    )
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [str(command), "backtest", "-c", str(config), "--out", "o", "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["summary"]["trade_count"] == 1


def test_a_constructor_that_fails_unexpectedly_is_shown_where_it_failed(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "window_strategy.py").write_text(
        "from collections import deque\n"
        "from tradeloom import Strategy, hookimpl\n"
        "class Window(Strategy):\n"
        "    def __init__(self, size):  # no type hint: the TOML string arrives as it is\n"
        "        self.closes = deque(maxlen=size)\n"
        "@hookimpl\n"
        "def tradeloom_register_strategies():\n"
        "    return {'window': Window}\n"
    )
    config = backtest_toml(
        tmp_path,
        shared_data / "orcl-1995-2014.txt",
        "window",
        extra='[plugins]\nmodules = ["window_strategy"]\n',
    )
    text = config.read_text().replace(
        'name = "window"', 'name = "window"\nparams = { size = "30" }'
    )
    config.write_text(text)
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path)
    assert done.returncode == 1
    assert "strategy 'window'" in done.stderr and "an integer is required" in done.stderr
    assert f"raised at {tmp_path / 'window_strategy.py'}:5 in __init__" in done.stderr


def test_a_plugin_module_shadowed_by_the_standard_library_is_said_to_be(tmp_path: Path) -> None:
    # json is imported before any plugin: `-p json` gets the standard library's, whatever the
    # current directory holds.
    (tmp_path / "json.py").write_text(
        "from tradeloom import hookimpl\n"
        "@hookimpl\n"
        "def tradeloom_register_strategies():\n"
        "    return {}\n"
    )
    # The installed command (python -m would put the current directory first on sys.path).
    command = Path(sys.executable).with_name("tradeloom")
    done = subprocess.run(
        [str(command), "-p", "json", "plugins"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("json "))
    assert lines[at].endswith("loaded")
    assert lines[at + 1].startswith(
        "    warning        module json implements no tradeloom hook: json.py in the current "
        "directory is not what was imported ("
    )


def test_the_tradeloom_command_runs_from_a_directory_deleted_under_it(tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("tradeloom")
    script = f'mkdir gone && cd gone && rmdir ../gone && exec "{command}" --help'
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: tradeloom" in done.stdout


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    done = tradeloom("--version", cwd=tmp_path)
    assert done.returncode == 0
    installed = importlib.metadata.version("tradeloom")
    assert done.stdout == f"tradeloom {installed} (Python {platform.python_version()})\n"


@pytest.mark.skipif(os.name != "posix", reason="signals as POSIX has them")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_while_a_finished_backtest_writes_its_results_waits_for_them(
    tmp_path: Path, shared_data: Path, signame: str
) -> None:
    # The signal comes once the run is over, as the results are being written (a plugin
    # module sends it from there, so the moment is exact).
    (tmp_path / "late_signal.py").write_text(
        "import os, signal\n"
        "from tradeloom.runtime.results import RunResult\n"
        "write = RunResult.write\n"
        "def late(self, *args, **kwargs):\n"
        f"    os.kill(os.getpid(), signal.{signame})\n"
        "    return write(self, *args, **kwargs)\n"
        "RunResult.write = late\n"
    )
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    env = {"PYTHONPATH": str(tmp_path)}
    done = tradeloom(
        "-p", "late_signal", "backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert f"tradeloom: {signame} came after the run had finished" in done.stderr
    assert "equity_curve" in done.stdout and (tmp_path / "o" / "equity.png").exists()
    summary = json.loads((tmp_path / "o" / "result.json").read_text())["summary"]
    assert summary["interrupted"] is None and summary["market_events"] == 5036


LATE_SIGNAL_SENDERS = {
    # After the results are written, as the command returns its status.
    "as the command ends": (
        "import os, signal\n"
        "from tradeloom import commands\n"
        "exit_code = commands._exit_code\n"
        "def late(result):\n"
        "    os.kill(os.getpid(), signal.{signame})\n"
        "    return exit_code(result)\n"
        "commands._exit_code = late\n"
    ),
    # While the interpreter shuts down.
    "at exit": (
        "import atexit, os, signal\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.{signame}))\n"
    ),
}


@pytest.mark.skipif(os.name != "posix", reason="signals as POSIX has them")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("when", LATE_SIGNAL_SENDERS)
def test_a_signal_after_a_finished_backtest_wrote_its_results_leaves_its_status(
    tmp_path: Path, shared_data: Path, signame: str, when: str
) -> None:
    # The status was 130 (or death by the signal, with no word) when a Ctrl-C came just
    # after the summary: the run had finished and its results were written.
    (tmp_path / "late_signal.py").write_text(LATE_SIGNAL_SENDERS[when].format(signame=signame))
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    env = {"PYTHONPATH": str(tmp_path)}
    # python -m tradeloom.cli runs console_main(), as the tradeloom executable does.
    done = tradeloom(
        "-p", "late_signal", "backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "interrupted" not in done.stderr + done.stdout
    if when == "as the command ends":
        assert f"tradeloom: {signame} came after the run had finished" in done.stderr


def test_results_that_cannot_be_written_are_an_error_and_leave_the_earlier_ones(
    tmp_path: Path, shared_data: Path
) -> None:
    # Files may grow to 20,000 bytes in the command's process: result.json cannot be written
    # (as on a full disk). The state is in memory, so the run itself completes.
    config = tmp_path / "t.toml"
    config.write_text(
        f'[feed]\nname = "replay"\nparams = {{ path = "{shared_data / "orcl-1995-2014.txt"}", '
        'format = "yahoo", instrument = "ORCL" }\n[[strategies]]\nname = "sma_cross"\n'
    )
    out = tmp_path / "o"
    out.mkdir()
    (out / "result.json").write_text('{"earlier": "run"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "tradeloom.cli", "backtest", "-c", str(config), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)),
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"tradeloom: error: the results could not be written in {out}" in done.stderr
    assert "File too large" in done.stderr
    assert "final equity" in done.stdout  # the summary is still shown
    assert (out / "result.json").read_text() == '{"earlier": "run"}\n'
    assert [path.name for path in out.iterdir()] == ["result.json"]


BUY_ONCE_PLUGIN = (
    "from tradeloom import Strategy, hookimpl\n"
    "class BuyOnce(Strategy):\n"
    "    def on_bar(self, bar, ctx):\n"
    "        if not ctx.position('ORCL') and not ctx.open_quantity('ORCL'):\n"
    "            ctx.buy('ORCL', 1)\n"
    "@hookimpl\n"
    "def tradeloom_register_strategies():\n"
    "    return {'buy_once': BuyOnce}\n"
)


@pytest.mark.parametrize("how", ["-p twice", "config and -p", "entry point and config"])
def test_a_plugin_module_named_twice_is_still_listed(
    tmp_path: Path, shared_data: Path, how: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "tl_cli_strategies.py").write_text(BUY_ONCE_PLUGIN)
    if how == "entry point and config":  # the README's pattern: installed, and also named
        info = site / "tl_cli_strategies-0.2.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: tl-cli-strategies\nVersion: 0.2.0\n"
        )
        (info / "entry_points.txt").write_text(
            "[tradeloom]\ntl_cli_strategies = tl_cli_strategies\n"
        )
    env = {"PYTHONPATH": str(site)}
    modules = '[plugins]\nmodules = ["tl_cli_strategies"]\n' if how != "-p twice" else ""
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "buy_once", modules)
    options = {
        "-p twice": ["-p", "tl_cli_strategies", "-p", "tl_cli_strategies"],
        "config and -p": ["-p", "tl_cli_strategies"],
        "entry point and config": [],
    }[how]
    listed = tradeloom(*options, "plugins", "-c", str(config), "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    plugins = [p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "tl_cli_strategies"]
    expected = {
        "-p twice": ("module", None),
        "config and -p": ("module", None),
        "entry point and config": ("entry point", "tl-cli-strategies"),
    }[how]
    assert [(p["source"], p["distribution"], p["status"]) for p in plugins] == [
        (*expected, "loaded")
    ]
    assert plugins[0]["registers"] == {"strategy": ["buy_once"]}
    text = tradeloom(*options, "plugins", "-c", str(config), cwd=tmp_path, env=env)
    assert any(line.startswith("tl_cli_strategies ") for line in text.stdout.splitlines())
    done = tradeloom(*options, "backtest", "-c", str(config), "--out", "o", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o" / "result.json").read_text())["summary"]["trade_count"] == 1


def test_a_plugin_failing_in_add_commands_loses_the_commands_it_added_before(
    tmp_path: Path,
) -> None:
    (tmp_path / "halfcmd.py").write_text(
        "from tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_add_commands(subparsers):\n"
        "    mine = subparsers.add_parser('mine', aliases=['mi'], help='a command of my own')\n"
        "    mine.set_defaults(func=lambda args: print('mine ran') or 0)\n"
        "    subparsers.add_parser('demo', help='a demo of my own')\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    helped = tradeloom("-p", "halfcmd", "--help", cwd=tmp_path, env=env)
    assert helped.returncode == 0, helped.stderr
    assert (
        "plugin 'halfcmd' failed in tradeloom_add_commands, so its commands are missing: "
        "ArgumentError: argument COMMAND: conflicting subparser: demo"
    ) in helped.stderr
    assert "mine" not in helped.stdout and "a command of my own" not in helped.stdout
    assert "demo" in helped.stdout and "plugins" in helped.stdout  # the others are all there
    for command in ("mine", "mi"):
        done = tradeloom("-p", "halfcmd", command, cwd=tmp_path, env=env)
        assert done.returncode == 2, done.stdout
        assert "mine ran" not in done.stdout
        assert f"invalid choice: '{command}'" in done.stderr


def test_an_installed_plugin_that_cannot_load_is_located_in_its_own_code(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "located-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: located\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[tradeloom]\nraises = located_raises\nno_attribute = located_fine:nothing_here\n"
        "no_module = located_no_such_module\n"
    )
    (site / "located_raises.py").write_text("import json\njson.loads('not json')\n")
    (site / "located_fine.py").write_text("")
    done = tradeloom("plugins", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert done.returncode == 1, done.stderr
    errors = {
        line.split()[0]: following.strip()
        for line, following in itertools.pairwise(done.stdout.splitlines())
        if line.endswith("failed")
    }
    assert errors["raises"].startswith("error          JSONDecodeError: Expecting value")
    assert errors["raises"].endswith(f"({site / 'located_raises.py'}:2)")  # not json's own line
    assert errors["no_attribute"] == (
        "error          AttributeError: module 'located_fine' has no attribute 'nothing_here'"
    )
    assert errors["no_module"] == (
        "error          ModuleNotFoundError: No module named 'located_no_such_module'"
    )


def test_an_error_inside_a_stock_plugin_points_at_no_line_of_its_code(
    tmp_path: Path, shared_data: Path
) -> None:
    # "raised at" shows where a strategy's or plugin's author looks: a damaged state file is
    # nobody's code, so not plugins/tradeloom_sqlite/persistence.py:331 either.
    config = backtest_toml(tmp_path, shared_data / "orcl-1995-2014.txt", "sma_cross")
    (tmp_path / "state.sqlite").write_bytes(b"garbage " * 20)
    done = tradeloom("backtest", "-c", str(config), "--out", "o", cwd=tmp_path)
    assert done.returncode == 1
    assert "file is not a database" in done.stderr
    assert "raised at" not in done.stderr
    assert "  (-v shows the traceback)" in done.stderr
