"""A resumed run says which settings changed since the run that saved its state: the books
carry on from that state, so a backtest resumed with other strategy parameters, validators,
executor or starting cash gives results that mix two configurations."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from resume_support import orcl_config

import tradeloom
from tradeloom import Strategy, hookimpl
from tradeloom.runtime.settings_record import METADATA_KEY
from tradeloom.testing import ticks
from tradeloom_memory.persistence import MemoryPersistence, MemoryStore
from tradeloom_sqlite.persistence import SqlitePersistence

PIPELINE_LOG = "tradeloom.pipeline"


def _first_half(tmp_path: Path, shared_data: Path) -> Path:
    lines = (shared_data / "orcl-1995-2014.txt").read_text().splitlines(keepends=True)
    first_half = tmp_path / "orcl-first-half.txt"
    first_half.write_text("".join(lines[:2501]))
    return first_half


def _resume(config: dict[str, Any], caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=PIPELINE_LOG):
        tradeloom.backtest(config, resume=True)
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.getMessage().startswith("resume: the")
    ]


def test_a_resume_with_other_settings_names_each_changed_one(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.sqlite"
    first = orcl_config(_first_half(tmp_path, shared_data), state)
    tradeloom.backtest(first)

    changed = copy.deepcopy(first)
    changed["strategies"][0]["params"]["fast"] = 5
    changed["executor"]["params"]["commission_bps"] = "20"
    changed["validators"] = [{"name": "no_short"}]
    changed["portfolio"] = {"starting_cash": "5000"}
    warning = (
        logging.WARNING,
        "resume: the stored state was saved by a run with other settings (changed: "
        "executor.params.commission_bps, portfolio.starting_cash, "
        "strategies[sma_cross].params.fast, validators); the books carry on from that "
        "state, so the results mix both",
    )
    assert _resume(changed, caplog) == [warning]
    # On the same data that run added nothing to the state: the record stays the first run's.
    assert _resume(changed, caplog) == [warning]

    # On longer data it adds to the state, and its record is kept: resumed again with the
    # same settings, nothing is said of them.
    changed["feed"]["params"]["path"] = str(shared_data / "orcl-1995-2014.txt")
    feed_note = (
        logging.INFO,
        "resume: the feed's settings changed since the state was saved (feed.params.path)",
    )
    assert _resume(changed, caplog) == [warning, feed_note]
    assert _resume(changed, caplog) == []


def test_numbers_compare_as_numbers_and_secrets_are_left_out(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.sqlite"
    first = orcl_config(_first_half(tmp_path, shared_data), state)
    first["executor"]["params"]["commission_bps"] = 10
    tradeloom.backtest(first)
    same = copy.deepcopy(first)
    same["executor"]["params"]["commission_bps"] = "10.00"
    same["portfolio"] = {"starting_cash": "100000.00"}  # the default, written out
    assert _resume(same, caplog) == []


def test_a_resume_on_longer_data_only_notes_the_feed_change(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.sqlite"
    tradeloom.backtest(orcl_config(_first_half(tmp_path, shared_data), state))
    full = orcl_config(shared_data / "orcl-1995-2014.txt", state)
    assert _resume(full, caplog) == [
        (logging.INFO, "resume: the feed's settings changed since the state was saved "
         "(feed.params.path)")
    ]  # fmt: skip


def test_the_record_keeps_no_setting_in_the_clear(tmp_path: Path, shared_data: Path) -> None:
    state = tmp_path / "state.sqlite"
    config = orcl_config(_first_half(tmp_path, shared_data), state)
    config["strategies"][0]["params"]["quantity"] = "12345.6789"
    tradeloom.backtest(config)
    persistence = SqlitePersistence(path=str(state))
    persistence.open()
    try:
        record = persistence.load_metadata()[METADATA_KEY]
    finally:
        persistence.close()
    assert "12345.6789" not in record and "orcl-first-half" not in record
    digests = json.loads(record)["digests"]
    assert "strategies[sma_cross].params.quantity" in digests
    assert "feed.params.path" in digests
    assert not any(path.startswith("persistence") for path in digests)


@pytest.mark.parametrize(
    "record", ["", "not json", "[]", '{"salt": 1, "digests": {}}', '{"digests": {}}']
)
def test_a_record_that_cannot_be_read_says_nothing(record: str) -> None:
    from tradeloom.runtime.settings_record import changed_settings
    from tradeloom.settings import Settings

    assert changed_settings(record, Settings()) is None


def test_parameters_named_as_secrets_are_left_out_and_objects_go_by_their_type() -> None:
    from tradeloom.runtime.settings_record import settings_paths
    from tradeloom.settings import Settings

    class Model:
        pass

    settings = Settings(
        strategies=[
            {
                "name": "s",
                "params": {
                    "api_key": "k-123",
                    "nested": {"Password": "hunter2", "depth": 3},
                    "model": Model(),
                },
            }
        ]
    )
    paths = settings_paths(settings)
    assert "strategies[s].params.nested.depth" in paths
    assert not any("api_key" in path or "Password" in path for path in paths)
    assert paths["strategies[s].params.model"].endswith(".Model>")


class TakesAnything(Strategy):
    def __init__(self, thing: object = None) -> None:
        self.thing = thing


class _Plugin:
    @hookimpl
    def tradeloom_register_strategies(self) -> dict[str, Any]:
        return {"takes_anything": TakesAnything}


def test_a_parameter_json_cannot_hold_does_not_fail_the_run() -> None:
    config = {
        "strategies": [{"name": "takes_anything", "params": {"thing": object()}}],
        "persistence": {"name": "memory"},
    }
    result = tradeloom.backtest(config, events=ticks("X", ["10", "11"]), plugins=[_Plugin()])
    assert result.market_events == 2


def test_ids_are_never_taken_for_secrets_and_numbers_only_in_decimal_form() -> None:
    from tradeloom.runtime.settings_record import changed_settings, settings_record
    from tradeloom.settings import Settings

    def settings(fast: int, account: str, cash: str) -> Settings:
        return Settings(
            strategies=[
                {
                    "name": "sma_cross",
                    "id": "authority_momentum",
                    "params": {"fast": fast, "bypass_filter": True, "db_password": "x"},
                },
                {"name": "sma_cross", "id": "passive_mm", "params": {"account": account}},
            ],
            portfolio={"starting_cash_by_portfolio": {"passive_mm": cash}},
        )

    record = settings_record(settings(5, "007", "1000"))
    assert changed_settings(record, settings(5, "007", "1000.00")) == ([], [])
    assert changed_settings(record, settings(50, "7", "9999")) == (
        [
            "portfolio.starting_cash_by_portfolio.passive_mm",
            "strategies[authority_momentum].params.fast",
            "strategies[passive_mm].params.account",
        ],
        [],
    )
    assert "db_password" not in record and "bypass_filter" in record


class FailsFirstMetadataSave(MemoryPersistence):
    failures = 1

    def save_metadata(self, items: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database is down")
        super().save_metadata(items)


def test_a_record_that_could_not_be_saved_is_saved_at_a_later_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()

    class Plugin:
        @hookimpl
        def tradeloom_register_persistence(self) -> dict[str, Any]:
            return {"flaky": lambda: FailsFirstMetadataSave(store)}

    prices = [str(100 + (i % 40 if i % 80 < 40 else 40 - i % 40)) for i in range(3000)]
    config = {
        "strategies": [{"name": "sma_cross", "params": {"fast": 3, "slow": 7, "quantity": 1}}],
        "persistence": {"name": "flaky"},
    }
    with caplog.at_level(logging.WARNING, logger=PIPELINE_LOG):
        result = tradeloom.backtest(config, events=ticks("X", prices), plugins=[Plugin()])
    assert result.fill_count > 0 and result.unsaved_portfolios == []
    failures = [r for r in caplog.records if "saving the settings record" in r.getMessage()]
    assert len(failures) == 1 and "database is down" in failures[0].getMessage()
    assert METADATA_KEY in store.metadata


def test_a_live_restart_with_other_settings_names_them(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = orcl_config(_first_half(tmp_path, shared_data), tmp_path / "state.sqlite")
    tradeloom.run(config)
    config["strategies"][0]["params"]["fast"] = 5
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=PIPELINE_LOG):
        tradeloom.run(config)
    assert [m for m in caplog.messages if m.startswith("resume: the")] == [
        "resume: the stored state was saved by a run with other settings (changed: "
        "strategies[sma_cross].params.fast); the books carry on from that state, so the "
        "results mix both"
    ]
