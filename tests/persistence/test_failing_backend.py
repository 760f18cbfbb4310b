"""A back end that raises a plain exception while the pipeline opens it and reads its state:
the run fails with a PersistenceError naming the back end and the call, caused by what the
back end raised (the command line shows where it was raised, not a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tradeloom import hookimpl
from tradeloom.errors import PersistenceError
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.settings import Settings
from tradeloom.testing import ticks
from tradeloom_memory.persistence import MemoryPersistence

STEPS = ["open", "claim_for_writing", "load_snapshots", "load_fills"]


class FailsIn(MemoryPersistence):
    failing = ""

    def _fail_if(self, step: str) -> None:
        if step == self.failing:
            raise OSError(f"the store went away in {step}")

    def open(self) -> None:
        self._fail_if("open")
        super().open()

    def claim_for_writing(self) -> None:
        self._fail_if("claim_for_writing")

    def load_snapshots(self) -> Any:
        self._fail_if("load_snapshots")
        return super().load_snapshots()

    def load_fills(self, portfolio_id: str | None = None) -> Any:
        self._fail_if("load_fills")
        return super().load_fills(portfolio_id)


@pytest.mark.parametrize("step", STEPS)
def test_a_plain_exception_of_the_back_end_is_a_persistence_error(step: str) -> None:
    failing = type("Failing", (FailsIn,), {"failing": step})

    class Plugin:
        @hookimpl
        def tradeloom_register_persistence(self) -> dict[str, Any]:
            return {"flaky": failing}

    pipeline = Pipeline(
        Settings(persistence={"name": "flaky"}, strategies=[{"name": "sma_cross"}]),
        mode="backtest",
        events=ticks("X", [Decimal(10 + i) for i in range(5)]),
        plugins=[Plugin()],
    )
    with pytest.raises(PersistenceError) as info:
        anyio.run(pipeline.run)
    assert str(info.value) == (
        f"persistence 'flaky' raised in {step}(): OSError: the store went away in {step}"
    )
    assert isinstance(info.value.__cause__, OSError)
    assert pipeline.result.market_events == 0


def test_the_command_line_names_the_back_end_and_where_it_raised(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "broken_store.py").write_text(
        "from tradeloom import hookimpl\n"
        "from tradeloom_memory.persistence import MemoryPersistence\n"
        "class BrokenStore(MemoryPersistence):\n"
        "    def open(self):\n"
        "        raise ConnectionRefusedError('no server at db:5432')\n"
        "@hookimpl\n"
        "def tradeloom_register_persistence():\n"
        "    return {'broken': BrokenStore}\n"
    )
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        '[plugins]\nmodules = ["broken_store"]\n'
        f'[feed]\nname = "replay"\nparams = {{ path = "{shared_data / "orcl-1995-2014.txt"}", '
        'format = "yahoo", instrument = "ORCL" }\n'
        '[[strategies]]\nname = "sma_cross"\n'
        '[persistence]\nname = "broken"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "tradeloom", "backtest", "-c", str(config), "--out", "o"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "tradeloom: error: persistence 'broken' raised in open(): "
        "ConnectionRefusedError: no server at db:5432",
        f"  raised at {tmp_path / 'broken_store.py'}:5 in open (-v shows the traceback)",
    ]
