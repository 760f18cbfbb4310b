"""A feed that raises, or gives something that is not a market event, fails the run with a
FeedError naming the feed (its own exception as the cause), on every delivery path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

import tradeloom
from tradeloom import hookimpl
from tradeloom.components import Feed
from tradeloom.errors import FeedError
from tradeloom.events import MarketTick
from tradeloom.testing import ticks

from .delivery_paths import Observer, delivery_paths

DATA = ticks("X", ["10", "11", "12", "13"])
IDLE = {"idle": tradeloom.Strategy()}


def bad_items(kind: str) -> list[Any]:
    items: list[Any] = list(DATA)
    if kind == "raises":
        return items
    if kind == "dict":
        items[2] = {"ts": DATA[2].ts, "instrument": "X", "last_price": "12"}
    elif kind == "None":
        items[2] = None
    elif kind.startswith("no "):  # built without validation, lacking a field
        fields = {k: v for k, v in dict(DATA[2]).items() if k != kind.removeprefix("no ")}
        items[2] = MarketTick.model_construct(**fields)
    elif kind == "naive time":
        items[2] = MarketTick.model_construct(
            **{**dict(DATA[2]), "ts": DATA[2].ts.replace(tzinfo=None)}
        )
    return items


class PlainFeed(Feed):
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def events(self, ctx: Any) -> Iterator[Any]:  # type: ignore[override]
        yield from bad_items(self.kind)
        if self.kind == "raises":
            raise KeyError("column 'close'")


class AsyncFeed(PlainFeed):
    async def events(self, ctx: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for item in bad_items(self.kind):
            yield item
        if self.kind == "raises":
            raise KeyError("column 'close'")


PATHS = delivery_paths(PlainFeed, AsyncFeed)


@pytest.mark.parametrize("path", PATHS)
def test_a_feed_that_raises_fails_the_run_with_a_feed_error(path: str) -> None:
    feed_class, plugins = PATHS[path]
    with pytest.raises(
        FeedError, match=r"""feed \w+Feed raised KeyError: "column 'close'\""""
    ) as info:
        tradeloom.backtest({}, feed=feed_class("raises"), plugins=plugins, strategies=IDLE)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("naive time", "TypeError: can't compare offset-naive and offset-aware datetimes"),
        ("no instrument", "instrument"),
        ("no ts", "ts"),
    ],
)
def test_a_feed_giving_what_is_no_market_event_is_named(path: str, kind: str, error: str) -> None:
    feed_class, plugins = PATHS[path]
    with pytest.raises(FeedError, match="gave something that is not a valid market event") as info:
        tradeloom.backtest({}, feed=feed_class(kind), plugins=plugins, strategies=IDLE)
    assert error in str(info.value)
    assert isinstance(info.value.__cause__, AttributeError | TypeError | KeyError)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("kind", "name"), [("dict", "dict"), ("None", "NoneType")])
def test_a_feed_giving_something_else_after_its_first_event_is_told_what_to_give(
    path: str, kind: str, name: str
) -> None:
    # Not by what reading it raised ("'NoneType' object has no attribute '__dict__'"), but
    # as a first item that is no event is told.
    feed_class, plugins = PATHS[path]
    with pytest.raises(FeedError) as info:
        tradeloom.backtest({}, feed=feed_class(kind), plugins=plugins, strategies=IDLE)
    assert str(info.value) == (
        f"feed {feed_class.__name__} must give Bar or MarketTick events, not {name}"
    )


def test_a_stage_that_fails_under_publish_is_not_blamed_on_the_feed() -> None:
    class Fails(Observer):
        @hookimpl
        def tradeloom_event_observed(self, stage: str, direction: str, event: object) -> None:
            if stage == "feed":
                raise LookupError("observer broke")

    with pytest.raises(Exception) as info:
        tradeloom.backtest({}, events=DATA, plugins=[Fails()], strategies=IDLE)
    assert not isinstance(info.value, FeedError)
    assert "observer broke" in str(info.value)


def test_a_feed_failing_after_trading_keeps_the_state_and_counts_its_events(tmp_path: Any) -> None:
    class Buys(tradeloom.Strategy):
        def on_tick(self, tick: MarketTick, ctx: Any) -> None:
            if not ctx.position("X") and not ctx.open_quantity("X"):
                ctx.buy("X", 1)

    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    with pytest.raises(FeedError):
        tradeloom.backtest(settings, feed=PlainFeed("raises"), strategies={"s": Buys()})
    resumed = tradeloom.backtest(
        settings,
        events=[*DATA, *ticks("X", ["14"], start=DATA[-1].ts + timedelta(seconds=1))],
        strategies={"s": Buys()},
        resume=True,
    )
    assert resumed.skipped_events == len(DATA)
    assert resumed.starting_equity != 0 and resumed.market_events == 1


class FailsWhenCalled(Feed):
    def events(self, ctx: Any) -> Iterator[Any]:  # type: ignore[override]
        raise FileNotFoundError("ticks.csv")


class FailsWhenIterated(Feed):
    class Rows:
        def __iter__(self) -> Iterator[Any]:
            raise ConnectionError("refused")

    def events(self, ctx: Any) -> Any:  # type: ignore[override]
        return self.Rows()


@pytest.mark.parametrize(
    ("feed", "error"),
    [
        (FailsWhenCalled(), "FileNotFoundError: ticks.csv"),
        (FailsWhenIterated(), "ConnectionError: refused"),
    ],
)
def test_a_feed_failing_before_its_first_event_is_named_too(feed: Feed, error: str) -> None:
    with pytest.raises(FeedError, match=f"feed {type(feed).__name__} raised {error}"):
        tradeloom.backtest({}, feed=feed, strategies=IDLE)
