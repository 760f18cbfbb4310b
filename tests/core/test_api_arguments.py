"""Wrong types passed from code get a TypeError that says what was expected."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import uuid6

import tradeloom
from tradeloom import Strategy
from tradeloom.components import Feed
from tradeloom.errors import FeedError
from tradeloom.events import MarketTick
from tradeloom.testing import bars

DATA = bars("X", ["10", "11"])


class Buy(Strategy):
    pass


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"strategies": [Buy()]}, "strategies must be a mapping of strategy id to Strategy"),
        (
            {"strategies": {"b": object()}},
            "strategy 'b' must be a tradeloom.Strategy instance, not object",
        ),
        ({"strategies": {"b": Buy}}, r"not the class Buy \(create one: Buy\(\)\)"),
        ({"strategies": {"": Buy()}}, "strategy ids must be non-empty strings"),
        ({"events": "abc"}, "events must be an iterable of Bar or MarketTick events, not str"),
        ({"events": DATA, "feed": object()}, "give either events or a feed, not both"),
        (
            {"feed": "replay"},
            r"feed must be a tradeloom Feed \(with an events\(\) method\), not str",
        ),
        ({"plugins": types}, "plugins must be a list of plugin objects, not module"),
        ({"progress": 5}, "progress must be a callable taking a count, not 5"),
        ({"resume": "yes"}, "resume must be True or False, not 'yes'"),
    ],
)
def test_backtest_arguments(arguments: dict[str, Any], message: str) -> None:
    defaults: dict[str, Any] = {"strategies": {"b": Buy()}}
    if "feed" not in arguments:
        defaults["events"] = DATA
    arguments = defaults | arguments
    with pytest.raises(TypeError, match=message):
        tradeloom.backtest({}, **arguments)


def test_events_that_are_not_market_events_are_refused_at_the_first() -> None:
    with pytest.raises(FeedError, match="events= must give Bar or MarketTick events, not dict"):
        tradeloom.backtest({}, strategies={"b": Buy()}, events=[{"instrument": "X"}])


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        (42, None, "config must be a tradeloom.toml path, a mapping shaped like it or Settings"),
        ({}, [1], "overrides must be a mapping, not list"),
    ],
)
def test_config_and_overrides(config: Any, overrides: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        tradeloom.make_settings(config, overrides)


def test_roles_given_as_one_string_are_refused() -> None:
    with pytest.raises(TypeError, match=r"roles must be a list of role names, like \['all'\]"):
        tradeloom.run({"strategies": [{"name": "sma_cross"}]}, roles="all")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ts": datetime(2024, 1, 2)}, "gave an event whose ts is not a UTC datetime"),
        ({"last_price": 10.5}, r"gave an event whose price is not a Decimal: 10\.5 \(float\)"),
    ],
)
def test_a_feed_building_events_without_validation_is_named_at_its_first_event(
    change: dict[str, Any], message: str
) -> None:
    # model_construct skips validation, as a feed's trusted builder may: the mistake would
    # otherwise fail later, in a strategy or the portfolio stage, and be blamed on them.
    values = {
        "event_id": uuid6.uuid7(),
        "ts": datetime(2024, 1, 2, tzinfo=UTC),
        "instrument": "X",
        "last_price": Decimal("10.5"),
    } | change
    tick = MarketTick.model_construct(**values)

    class Unchecked(Feed):
        def events(self, ctx: Any) -> Any:
            return [tick]

    with pytest.raises(FeedError, match=f"feed Unchecked {message}"):
        tradeloom.backtest({}, strategies={"b": Buy()}, feed=Unchecked())
