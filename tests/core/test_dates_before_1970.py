"""History from before 1970 is backtested like any other: the simulated clock starts earlier
than any data (it started at the Unix epoch, and the first older event was refused as out of
time order)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tradeloom
from tradeloom.components import Feed
from tradeloom.errors import BadInputError
from tradeloom.events import Bar
from tradeloom.testing import bars

from .delivery_paths import delivery_paths

START = datetime(1962, 1, 2, tzinfo=UTC)
CLOSES = [10, 11, 12, 13, 12, 11, 10, 11, 12, 13]
SMA = [{"name": "sma_cross", "params": {"fast": 2, "slow": 3}}]


class ListFeed(Feed):
    def __init__(self, events: list[Bar]) -> None:
        self.items = events

    def events(self, ctx: Any) -> Iterator[Bar]:  # type: ignore[override]
        yield from self.items


class AsyncListFeed(ListFeed):
    async def events(self, ctx: Any) -> AsyncIterator[Bar]:  # type: ignore[override]
        for event in self.items:
            yield event


PATHS = delivery_paths(ListFeed, AsyncListFeed)


@pytest.mark.parametrize("path", PATHS)
def test_bars_from_1962_are_backtested_on_every_delivery_path(path: str) -> None:
    feed_class, plugins = PATHS[path]
    data = bars("IBM", CLOSES, start=START)
    result = tradeloom.backtest({"strategies": SMA}, feed=feed_class(data), plugins=plugins)
    assert result.market_events == len(CLOSES)
    assert result.fills, "the crossings traded"
    assert all(START <= fill.ts <= data[-1].ts for fill in result.fills)
    assert result.snapshots["sma_cross"].ts == data[-1].ts


def test_a_yahoo_file_from_the_1960s_replays(tmp_path: Path) -> None:
    rows = "".join(
        f"1960-01-{day:02d},{close},{close + 1},{close - 1},{close},{close},1000\n"
        for day, close in zip(range(4, 14), CLOSES, strict=True)
    )
    path = tmp_path / "ibm-1960.csv"
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + rows)
    feed = {"name": "replay", "params": {"path": str(path), "format": "yahoo", "instrument": "IBM"}}
    result = tradeloom.backtest({"feed": feed, "strategies": SMA})
    assert result.market_events == len(CLOSES)
    assert result.fills
    assert result.fills[0].ts.year == 1960
    # Stamped at the end of the last day.
    assert result.snapshots["sma_cross"].ts == datetime(1960, 1, 14, tzinfo=UTC)


def test_data_going_back_in_time_is_still_refused_before_1970() -> None:
    data = bars("IBM", CLOSES[:3], start=START) + bars("IBM", CLOSES[:3], start=START)
    with pytest.raises(BadInputError, match="a backtest needs its events in time order"):
        tradeloom.backtest({"strategies": SMA}, feed=ListFeed(data))
