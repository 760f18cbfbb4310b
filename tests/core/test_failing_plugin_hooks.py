"""A plugin that raises in a lifecycle or observer hook is named in a PluginError; it does not
leave state behind that a later run would refuse, and a failure after the run keeps the result."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import tradeloom
from tradeloom import hookimpl
from tradeloom.errors import PluginError
from tradeloom.testing import bars


class Started:
    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Any) -> None:
        raise RuntimeError("cannot start the dashboard")


class Observer:
    @hookimpl
    def tradeloom_event_observed(self, stage: str, direction: str, event: Any) -> None:
        if stage == "portfolio":
            raise KeyError(event.type)


class Stopped:
    @hookimpl
    async def tradeloom_pipeline_stopped(self, pipeline: Any, result: Any) -> None:
        raise OSError("cannot upload the report")


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "strategies": [{"name": "sma_cross", "params": {"fast": 1, "slow": 2}}],
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "state.sqlite")}},
    }


PRICES = ["10", "11", "12", "11", "10", "11", "12"]


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            Started(),
            r"plugin 'Started-\d+' failed in tradeloom_pipeline_started: "
            r"RuntimeError: cannot start the dashboard$",
        ),
        (Observer(), r"plugin 'Observer-\d+' failed in tradeloom_event_observed: KeyError: "),
    ],
)
def test_a_failing_hook_names_its_plugin(tmp_path: Path, plugin: Any, message: str) -> None:
    with pytest.raises(PluginError) as caught:
        tradeloom.backtest(config(tmp_path), events=bars("X", PRICES), plugins=[plugin])
    assert re.match(message, str(caught.value)), str(caught.value)
    assert caught.value.__cause__ is not None  # the plugin's own exception, with its traceback


def test_a_run_that_failed_before_any_fill_leaves_no_state_to_refuse(tmp_path: Path) -> None:
    with pytest.raises(PluginError):
        tradeloom.backtest(config(tmp_path), events=bars("X", PRICES), plugins=[Started()])
    # Nothing happened, so nothing was saved: the same backtest runs without --resume.
    result = tradeloom.backtest(config(tmp_path), events=bars("X", PRICES))
    assert result.fill_count > 0


def test_a_hook_failing_after_the_run_keeps_the_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stopped = Stopped()
    name = f"Stopped-{id(stopped)}"  # the name a plugin registered from code gets
    with caplog.at_level("ERROR", logger="tradeloom.pipeline"):
        result = tradeloom.backtest(config(tmp_path), events=bars("X", PRICES), plugins=[stopped])
    assert result.fill_count > 0 and result.snapshots
    assert caplog.messages == [
        f"plugin {name!r} failed in tradeloom_pipeline_stopped: OSError: cannot upload the report"
    ]


class Wrapper:
    @hookimpl(wrapper=True)
    def tradeloom_pipeline_started(self, pipeline: Any) -> Any:
        return (yield)


def test_a_failure_is_named_also_when_a_wrapper_is_registered(tmp_path: Path) -> None:
    with pytest.raises(
        PluginError, match=r"plugin 'Started-\d+' failed in tradeloom_pipeline_started"
    ):
        tradeloom.backtest(
            config(tmp_path), events=bars("X", PRICES), plugins=[Started(), Wrapper()]
        )


class Releases:
    def __init__(self) -> None:
        self.released = False

    @hookimpl(trylast=True)  # called after the failing ones
    def tradeloom_pipeline_stopped(self, pipeline: Any, result: Any) -> None:
        self.released = True


def test_every_plugin_hears_stopped_even_after_one_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    releases = Releases()
    with caplog.at_level("ERROR", logger="tradeloom.pipeline"):
        result = tradeloom.backtest(
            config(tmp_path), events=bars("X", PRICES), plugins=[releases, Stopped(), Stopped()]
        )
    assert releases.released and result.fill_count > 0
    assert len(caplog.messages) == 2  # each failing plugin is logged
