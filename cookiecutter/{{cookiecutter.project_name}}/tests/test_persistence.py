"""{{ cookiecutter.class_name }} against tradeloom's persistence conformance suite, plus its own
tests: a write cut short by a crash, and a backtest stopped halfway and resumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tradeloom
from tradeloom.errors import CorruptStateError
from tradeloom.testing.persistence import PersistenceConformance, make_fill, make_rejection

from {{ cookiecutter.package_name }} import {{ cookiecutter.class_name }}

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.csv"


class Test{{ cookiecutter.class_name }}Conformance(PersistenceConformance):
    @pytest.fixture
    def persistence(self, tmp_path: Path) -> {{ cookiecutter.class_name }}:
        return {{ cookiecutter.class_name }}(tmp_path / "state")

    def reopen(self, persistence: Any) -> {{ cookiecutter.class_name }}:
        return {{ cookiecutter.class_name }}(persistence.path)

    def corrupt_a_snapshot(self, persistence: Any, portfolio_id: str) -> str:
        stored = json.loads(persistence.snapshot_file.read_text())
        stored[portfolio_id]["cash"] = "lots"
        persistence.snapshot_file.write_text(json.dumps(stored))
        return "cash"

    def corrupt_a_fill(self, persistence: Any, portfolio_id: str) -> str:
        lines = persistence.journal.read_text().splitlines(keepends=True)
        damaged = [
            line.replace('\\"side\\":\\"buy\\"', '\\"side\\":\\"hold\\"')
            if json.loads(line)["portfolio_id"] == portfolio_id
            else line
            for line in lines
        ]
        persistence.journal.write_text("".join(damaged))
        return "side"


def test_a_line_cut_short_by_a_crash_is_dropped_and_journaled_again(tmp_path: Path) -> None:
    store = {{ cookiecutter.class_name }}(tmp_path / "state")
    store.open()
    first, second = make_fill("alpha"), make_fill("alpha")
    store.record_fills([first])
    with store.journal.open("a") as file:  # a crash in the middle of writing `second`
        file.write(json.dumps({"portfolio_id": "alpha", "fill": second.model_dump_json()})[:40])
    store.close()

    again = {{ cookiecutter.class_name }}(tmp_path / "state")
    again.open()
    assert again.load_fills() == [first]  # read past, not cut: a reader never cuts
    assert not again.journal.read_text().endswith("\n")
    again.record_fills([first, second])  # the pipeline sends what was not acknowledged
    assert again.load_fills() == [first, second]
    assert again.journal.read_text().count("\n") == 2


def test_a_rejection_cut_short_by_a_crash_is_passed_over_then_cut(tmp_path: Path) -> None:
    store = {{ cookiecutter.class_name }}(tmp_path / "state")
    store.open()
    first, second = make_rejection("alpha"), make_rejection("alpha")
    store.record_rejections([first])
    with store.rejections_file.open("a") as file:
        file.write(second.model_dump_json()[:40])
    assert store.load_rejections() == [first]
    store.record_rejections([second])
    assert store.load_rejections() == [first, second]


def test_a_damaged_line_in_the_middle_is_an_error_not_an_empty_journal(tmp_path: Path) -> None:
    store = {{ cookiecutter.class_name }}(tmp_path / "state")
    store.open()
    store.record_fills([make_fill("alpha"), make_fill("alpha")])
    lines = store.journal.read_text().splitlines(keepends=True)
    store.journal.write_text("{not json\n" + lines[1])
    with pytest.raises(CorruptStateError, match="line 1"):
        {{ cookiecutter.class_name }}(tmp_path / "state").open()


def backtest(data: Path, state: Path, *, resume: bool = False) -> Any:
    config = {
        "feed": {
            "name": "replay",
            "params": {"path": str(data), "format": "yahoo", "instrument": "ACME"},
        },
        "strategies": [{"name": "sma_cross", "params": {"fast": 5, "slow": 20, "quantity": 10}}],
        # Picks the back end by name, as a tradeloom.toml does: this needs the plugin installed.
        "persistence": {"name": "{{ cookiecutter.component_name }}", "params": {"path": str(state)}},
    }
    return tradeloom.backtest(config, resume=resume)


def test_a_backtest_stopped_halfway_and_resumed_ends_as_one_run_through(tmp_path: Path) -> None:
    whole = backtest(SAMPLE, tmp_path / "whole")
    assert whole.fills, "sma_cross did not trade on the sample data"

    lines = SAMPLE.read_text().splitlines(keepends=True)
    half = tmp_path / "half.csv"
    half.write_text("".join(lines[: len(lines) // 2]))
    backtest(half, tmp_path / "resumed")
    resumed = backtest(SAMPLE, tmp_path / "resumed", resume=True)

    stored = {{ cookiecutter.class_name }}(tmp_path / "resumed")
    stored.open()
    def trades(fills: Any) -> list[tuple[Any, ...]]:  # ids differ from run to run
        return [(f.ts, f.side, f.quantity, f.price, f.commission) for f in fills]

    assert trades(stored.load_fills()) == trades(whole.fills)
    assert stored.load_snapshots()["sma_cross"].equity == whole.snapshots["sma_cross"].equity
    assert resumed.snapshots["sma_cross"].equity == whole.snapshots["sma_cross"].equity
    # The settings of the run that saved the state are kept with it (save_metadata).
    assert stored.load_metadata()
