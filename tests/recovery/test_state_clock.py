"""The stored state says which clock stamped it (metadata ``tradeloom.clock``), once a write of
the run that stamped it has worked: a backtest refuses to resume wall-clock state, so the key
must follow the state, neither ahead of it nor behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tradeloom
from tradeloom import hookimpl
from tradeloom.errors import ConfigError
from tradeloom.runtime.settings_record import CLOCK_KEY
from tradeloom_sqlite.persistence import SqlitePersistence

ORCL = Path(__file__).resolve().parents[1] / "data" / "orcl-1995-2014.txt"


class NoWrites(SqlitePersistence):
    """Keeps metadata, but every write of state fails (a disk that filled up)."""

    def record_fills(self, fills: Any) -> None:
        raise OSError("disk full")

    def save_snapshots(self, snapshots: Any) -> None:
        raise OSError("disk full")


class ClockOnSecondTry(SqlitePersistence):
    """Refuses the clock's record once (a metadata write that failed), then keeps it."""

    refused = 0

    def save_metadata(self, items: Any) -> None:
        if CLOCK_KEY in items and not ClockOnSecondTry.refused:
            ClockOnSecondTry.refused += 1
            raise OSError("locked")
        super().save_metadata(items)


class Backends:
    @hookimpl
    def tradeloom_register_persistence(self) -> dict[str, Any]:
        return {"no_writes": NoWrites, "clock_on_second_try": ClockOnSecondTry}


def config(state: Path, bars: int, persistence: str = "sqlite") -> dict[str, Any]:
    lines = ORCL.read_text().splitlines()
    data = state.with_name(f"orcl-{bars}.csv")
    data.write_text("\n".join(lines[: bars + 1]) + "\n")
    return {
        "feed": {
            "name": "replay",
            "params": {"path": str(data), "format": "yahoo", "instrument": "ORCL"},
        },
        "strategies": [{"name": "sma_cross", "params": {"fast": 2, "slow": 5}}],
        "persistence": {"name": persistence, "params": {"path": str(state)}},
    }


def stored_clock(state: Path) -> str | None:
    persistence = SqlitePersistence(path=str(state))
    persistence.open()
    try:
        return persistence.load_metadata().get(CLOCK_KEY)
    finally:
        persistence.close()


def test_a_backtest_and_a_live_run_each_stamp_the_state(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    assert tradeloom.backtest(config(state, 60)).fills
    assert stored_clock(state) == "simulated"
    assert tradeloom.run(config(state, 60)).fills
    assert stored_clock(state) == "wall"
    with pytest.raises(ConfigError, match="holds state stamped with the wall clock"):
        tradeloom.backtest(config(state, 90), resume=True)


def test_a_live_run_whose_writes_failed_leaves_the_backtests_clock(tmp_path: Path) -> None:
    # Its writes failed, so the state is still the backtest's, and can be resumed as one.
    state = tmp_path / "s.db"
    assert tradeloom.backtest(config(state, 60)).fills
    live = tradeloom.run(config(state, 60, "no_writes"), plugins=[Backends()])
    assert live.fills and live.unsaved_portfolios
    assert stored_clock(state) == "simulated"
    resumed = tradeloom.backtest(config(state, 90), resume=True)
    assert resumed.skipped_events == 60 and resumed.market_events == 30


def test_a_clock_record_that_failed_is_kept_at_a_later_write(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    assert tradeloom.backtest(config(state, 60)).fills
    ClockOnSecondTry.refused = 0
    settings = {**config(state, 60, "clock_on_second_try"), "executor": {"name": "paper"}}
    assert tradeloom.run(settings, plugins=[Backends()]).fills
    assert ClockOnSecondTry.refused == 1
    assert stored_clock(state) == "wall"
