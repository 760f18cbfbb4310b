"""The stock replay feed against the feed conformance suite, and the suite against feeds that
break the contract (so a broken plugin cannot pass it)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
import uuid6

from tradeloom.components import DeadLetter, Feed, FeedContext
from tradeloom.events import Bar, MarketEvent, MarketTick
from tradeloom.testing import ticks
from tradeloom.testing.feeds import FeedConformance, FeedTimeoutError, collect_events
from tradeloom_replay.feed import ReplayFeed

YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
YAHOO_ROWS = [
    "2024-01-02,10.00,10.50,9.80,10.20,10.20,1000\n",
    "2024-01-03,10.20,10.90,10.10,10.80,10.80,1200\n",
    "2024-01-04,10.80,11.00,10.40,10.45,10.45,900\n",
    "2024-01-05,10.45,10.60,10.00,10.10,10.10,1500\n",
]
TICKS = (
    "Datetime,Open,High,Low,Close,Volume,OpenInterest\n"
    "2015-09-23T20:57:42.146,3067.00,3067.00,3067.00,3067.00,180,0\n"
    "2015-09-23T20:57:46.151,3066.00,3066.00,3066.00,3066.00,2,0\n"
    "2015-09-23T20:57:47.000,3066.50,3066.50,3066.50,3066.50,7,0\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


class TestReplayFeedDailyBars(FeedConformance):
    expected_events = len(YAHOO_ROWS)

    @pytest.fixture
    def feed(self, tmp_path: Path) -> Feed:
        path = write(tmp_path / "acme.csv", YAHOO_HEADER + "".join(YAHOO_ROWS))
        return ReplayFeed(path=str(path), format="yahoo", instrument="ACME")

    @pytest.fixture
    def bad_input_feed(self, tmp_path: Path) -> Feed:
        rows = [*YAHOO_ROWS[:2], "2024-01-03b,x,y,z,w,v,u\n", *YAHOO_ROWS[2:]]
        path = write(tmp_path / "acme-bad.csv", YAHOO_HEADER + "".join(rows))
        return ReplayFeed(path=str(path), format="yahoo", instrument="ACME")


class TestReplayFeedTwoFilesMerged(FeedConformance):
    expected_events = 2 * len(YAHOO_ROWS)

    @pytest.fixture
    def feed(self, tmp_path: Path) -> Feed:
        a = write(tmp_path / "a.csv", YAHOO_HEADER + "".join(YAHOO_ROWS))
        b = write(tmp_path / "b.csv", YAHOO_HEADER + "".join(YAHOO_ROWS[::-1][::-1]))
        return ReplayFeed(paths={"AAA": str(a), "BBB": str(b)}, format="yahoo")

    @pytest.fixture
    def bad_input_feed(self, tmp_path: Path) -> Feed:
        good = write(tmp_path / "a.csv", YAHOO_HEADER + "".join(YAHOO_ROWS))
        rows = [YAHOO_ROWS[0], "2024-01-03,10.20,9.00,10.10,10.80,10.80,1200\n", YAHOO_ROWS[3]]
        bad = write(tmp_path / "b.csv", YAHOO_HEADER + "".join(rows))
        return ReplayFeed(paths={"AAA": str(good), "BBB": str(bad)}, format="yahoo")


class TestReplayFeedTicks(FeedConformance):
    expected_events = 3

    @pytest.fixture
    def feed(self, tmp_path: Path) -> Feed:
        path = write(tmp_path / "ticks.csv", TICKS)
        return ReplayFeed(path=str(path), format="ticks", instrument="ES")

    @pytest.fixture
    def bad_input_feed(self, tmp_path: Path) -> Feed:
        lines = TICKS.splitlines(keepends=True)
        bad = "2015-09-23T20:57:45.000,NaN,NaN,NaN,NaN,1,0\n"
        path = write(tmp_path / "ticks-bad.csv", "".join([*lines[:2], bad, *lines[2:]]))
        return ReplayFeed(path=str(path), format="ticks", instrument="ES")


class TestReplayFeedPacedTicks(TestReplayFeedTicks):
    """The same ticks on the wall clock (an async iterator), far faster than their pace."""

    @pytest.fixture
    def feed(self, tmp_path: Path) -> Feed:
        path = write(tmp_path / "ticks.csv", TICKS)
        return ReplayFeed(path=str(path), format="ticks", instrument="ES", speed=1e9)


# --------------------------------------------------------------------------------------------
# An async, "live" feed passes too (finite = False: the suite stops it after max_events).

START = datetime(2024, 5, 6, 9, 15, tzinfo=UTC)


class CountingLiveFeed(Feed):
    """Yields a tick every few milliseconds until closed; one bad message every fifth."""

    def __init__(self, bad_every: int = 0) -> None:
        self.bad_every = bad_every
        self.closed = 0

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketEvent]:  # type: ignore[override]
        count = 0
        while not self.closed:
            count += 1
            await anyio.sleep(0.001)
            if self.bad_every and count % self.bad_every == 0:
                ctx.report_bad_input(
                    DeadLetter(
                        source="counting",
                        reason="price is not a number",
                        error_type="bad_message",
                        raw=b'{"price": "x"}',
                        ts=ctx.clock.now(),
                    )
                )
                continue
            yield MarketTick(
                event_id=ctx.ids.new_id(),
                ts=START + timedelta(seconds=count),
                instrument="LIVE",
                last_price=Decimal(100) + count,
            )

    async def close(self) -> None:
        self.closed += 1


class TestAsyncLiveFeed(FeedConformance):
    finite = False
    max_events = 12
    timeout_seconds = 10.0

    @pytest.fixture
    def feed(self) -> Feed:
        return CountingLiveFeed()

    @pytest.fixture
    def bad_input_feed(self) -> Feed:
        return CountingLiveFeed(bad_every=5)


# --------------------------------------------------------------------------------------------
# Feeds that break the contract fail the suite's checks.


class ListFeed(Feed):
    def __init__(self, events: list[MarketEvent]) -> None:
        self._events = events

    def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:
        return iter(self._events)


def tick(ts: datetime, price: str = "10", instrument: str = "X") -> MarketTick:
    return MarketTick(event_id=uuid6.uuid7(), ts=ts, instrument=instrument, last_price=price)


suite = FeedConformance()


def test_suite_refuses_ids_not_from_the_context() -> None:
    run = collect_events(ListFeed([tick(START), tick(START + timedelta(1))]))
    with pytest.raises(AssertionError, match=r"not minted by ctx\.ids"):
        suite.test_event_ids_come_from_the_context(run)


class MintingFeed(Feed):
    def __init__(self, times: list[datetime]) -> None:
        self.times = times

    def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:
        for ts in self.times:
            yield MarketTick(event_id=ctx.ids.new_id(), ts=ts, instrument="X", last_price="1")


def test_suite_refuses_events_out_of_time_order() -> None:
    run = collect_events(MintingFeed([START, START + timedelta(2), START + timedelta(1)]))
    suite.test_event_ids_come_from_the_context(run)  # the ids are fine
    with pytest.raises(AssertionError, match="must be in time order per instrument"):
        suite.test_time_order_per_instrument(run)


def test_suite_refuses_unvalidated_events() -> None:
    broken = MarketTick.model_construct(
        event_id=uuid6.uuid7(), ts=START, instrument="X", last_price=Decimal("-1")
    )
    run = collect_events(ListFeed([broken]))
    with pytest.raises(Exception, match="greater than zero"):
        suite.test_events_are_valid(run)


def test_suite_refuses_a_naive_time_in_its_own_words() -> None:
    naive = MarketTick.model_construct(
        event_id=uuid6.uuid7(), ts=START.replace(tzinfo=None), instrument="X", last_price="1"
    )
    run = collect_events(ListFeed([tick(START), naive, tick(START + timedelta(1))]))
    assert len(run.events) == 3  # collected, not a TypeError from the clock
    with pytest.raises(AssertionError, match="ts is not a UTC datetime"):
        suite.test_events_are_valid(run)
    suite.test_time_order_per_instrument(run)  # the others are in order: said once, above


def test_suite_refuses_bars_stamped_before_their_end() -> None:
    early = Bar.model_construct(
        event_id=uuid6.uuid7(),
        ts=START,
        instrument="X",
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
        volume=Decimal(0),
        start=START,
        end=START + timedelta(days=1),
        schema_version=1,
        type="bar",
    )
    run = collect_events(ListFeed([early]))
    with pytest.raises(AssertionError, match="look-ahead"):
        suite.test_events_are_valid(run)


def test_suite_refuses_a_list_instead_of_an_iterator() -> None:
    class ReturnsList(ListFeed):
        def events(self, ctx: FeedContext) -> list[MarketEvent]:  # type: ignore[override]
            return list(self._events)

    run = collect_events(ReturnsList([tick(START)]))
    assert run.ended and len(run.events) == 1
    with pytest.raises(AssertionError, match="must return an iterator"):
        suite.test_events_returns_an_iterator(run)


def test_suite_refuses_non_events() -> None:
    run = collect_events(ListFeed(["not an event"]))  # type: ignore[list-item]
    with pytest.raises(AssertionError, match="item 0 is a str"):
        suite.test_yields_market_events(run)


def test_suite_refuses_a_feed_that_raises_on_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", YAHOO_HEADER + "2024-01-02,x,1,1,1,1,1\n")
    feed = ReplayFeed(path=str(path), format="yahoo", instrument="A", on_error="stop")

    class Request:
        @staticmethod
        def getfixturevalue(name: str) -> Feed:
            assert name == "bad_input_feed"
            return feed

    with pytest.raises(pytest.fail.Exception, match="raised BadInputError on bad input"):
        suite.test_bad_input_is_reported_and_skipped(Request())  # type: ignore[arg-type]


def test_suite_times_out_on_a_feed_that_never_yields() -> None:
    class Silent(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[MarketEvent]:  # type: ignore[override]
            await anyio.sleep_forever()
            yield  # type: ignore[misc]

    with pytest.raises(FeedTimeoutError, match="Silent yielded 0 item"):
        collect_events(Silent(), timeout_seconds=0.2)


def test_suite_times_out_on_a_plain_feed_blocked_in_a_call() -> None:
    class Blocked(Feed):
        def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:
            reader, writer = socket.socketpair()  # nothing is ever written
            try:
                yield from ticks("X", ["10"])
                reader.recv(1)  # blocks: an event loop's timeout cannot reach it
            finally:
                reader.close()
                writer.close()

    started = time.monotonic()
    with pytest.raises(FeedTimeoutError) as caught:
        collect_events(Blocked(), timeout_seconds=0.3)
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith(
        "Blocked yielded 1 item(s) in 0.3s without ending (interrupted in a call that did not "
        "return: a plain iterator must not block)"
    )
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # put back
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_an_alarm_already_set_is_left_alone() -> None:
    # pytest-timeout's signal method, say: its timer must survive a collect_events call.
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        run = collect_events(_ReplayLike(), timeout_seconds=5)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < remaining <= 30 and run.ended and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _ReplayLike(Feed):
    def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:
        yield from ticks("X", ["10", "11"])


def test_the_pipeline_test_times_out_on_a_plain_feed_blocked_in_a_call() -> None:
    class BlockedAfterOne(Feed):
        def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:
            reader, writer = socket.socketpair()
            try:
                yield from ticks("X", ["10"])
                reader.recv(1)
            finally:
                reader.close()
                writer.close()

    class Suite(FeedConformance):
        timeout_seconds = 0.3
        max_events = 5

    started = time.monotonic()
    with pytest.raises(FeedTimeoutError, match="BlockedAfterOne did not let the pipeline finish"):
        Suite().test_runs_in_a_pipeline(BlockedAfterOne())
    assert time.monotonic() - started < 10


def test_collect_events_closes_the_feed_and_limits() -> None:
    feed = CountingLiveFeed()
    run = collect_events(feed, limit=3)
    assert [event.last_price for event in run.events] == [101, 102, 103]
    assert feed.closed == 1
    assert run.asynchronous and not run.ended
