"""Events the feed builds without re-validation equal fully validated ones, field for field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import uuid6
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeloom.events import Bar, Event, MarketTick
from tradeloom_replay import ReplayFeed
from tradeloom_replay.construct import bar_builder, row_builder, tick_builder
from tradeloom_replay.rows import BAR_ROW_FIELDS, TICK_ROW_FIELDS


def assert_same_as_validated(event: Event) -> None:
    explicit = {name: getattr(event, name) for name in event.model_fields_set}
    validated = type(event)(**explicit)
    assert event == validated
    assert event.model_fields_set == validated.model_fields_set
    assert event.model_dump_json() == validated.model_dump_json()
    assert hash(event) == hash(validated)
    assert type(event).model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("orcl-1995-2014.txt", {"format": "yahoo"}),
        ("orcl-1995-2014.txt", {"format": "yahoo", "price_column": "adj_close"}),
        ("nvda-1999-2014.txt", {"format": "yahoo", "timezone": "America/New_York"}),
        ("2006-01-02-volume-min-001.txt", {"format": "minute"}),
        ("ticksample.csv", {"format": "ticks"}),
        ("bidask.csv", {"format": "bidask"}),
    ],
)
def test_every_event_of_the_sample_files_validates_to_itself(data_dir, context, name, params):
    feed = ReplayFeed(path=data_dir / name, instrument="X", **params)
    count = 0
    for event in feed.events(context.feed):
        assert_same_as_validated(event)
        count += 1
    assert count == feed.rows_read > 0


prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e9"), places=8)
volumes = st.decimals(min_value=Decimal(0), max_value=Decimal("1e12"), places=4)
instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(
    last=prices,
    bid=st.none() | prices,
    ask=st.none() | prices,
    volume=st.none() | volumes,
    ts=instants,
)
def test_built_ticks_equal_validated_ticks(last, bid, ask, volume, ts) -> None:
    values: dict[str, Any] = {
        "event_id": uuid6.uuid7(),
        "ts": ts,
        "instrument": "X",
        "last_price": last,
        "bid": bid,
        "ask": ask,
    }
    if volume is not None:
        values["volume"] = volume
    build = tick_builder(frozenset(values) - {"event_id"})
    row = tuple(values.get(name) for name in TICK_ROW_FIELDS)
    built = build(values["event_id"], row)
    assert_same_as_validated(built)
    assert built == MarketTick(**values)
    assert built.model_fields_set == set(values)


@settings(max_examples=200, deadline=None)
@given(points=st.lists(prices, min_size=4, max_size=4), volume=volumes, start=instants)
def test_built_bars_equal_validated_bars(points, volume, start) -> None:
    low, open_, close, high = sorted(points)
    values = {
        "event_id": uuid6.uuid7(),
        "ts": start + timedelta(minutes=1),
        "instrument": "X",
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "start": start,
        "end": start + timedelta(minutes=1),
    }
    built = bar_builder()(values["event_id"], tuple(values[name] for name in BAR_ROW_FIELDS))
    assert built == Bar(**values)
    assert_same_as_validated(built)


def test_the_fast_path_is_in_use_for_both_event_types() -> None:
    # A builder that fails its self-check validates every event instead; with the pinned
    # pydantic the generated builders must pass it.
    assert tick_builder(frozenset({"ts", "last_price"})).__name__ == "build"
    assert bar_builder().__name__ == "build"


def test_a_builder_that_fails_its_self_check_validates_every_event() -> None:
    # A row that leaves out a required field cannot be built without validation: the
    # generated builder's sample disagrees with the validated one, so the builder validates.
    build = row_builder(MarketTick, ("ts", "instrument"), frozenset({"ts"}))
    assert build.__name__ == "validate"
    with pytest.raises(ValueError, match="last_price"):
        build(uuid6.uuid7(), (datetime(2024, 1, 1, tzinfo=UTC), "X"))
