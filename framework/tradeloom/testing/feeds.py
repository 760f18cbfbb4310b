"""A conformance suite for feed plugins.

A feed (a :class:`tradeloom.components.Feed`) proves that it keeps the contract by running this
suite against itself. Subclass :class:`FeedConformance` in a test module, tell it how to build
your feed, and pytest runs every contract test::

    import pytest
    from tradeloom.testing.feeds import FeedConformance

    from my_plugin import MyFeed


    class TestMyFeed(FeedConformance):
        @pytest.fixture
        def feed(self, tmp_path):
            # A new feed over clean data: at least one event, no bad records.
            path = tmp_path / "prices.csv"
            path.write_text("...")
            return MyFeed(path=str(path))

        @pytest.fixture
        def bad_input_feed(self, tmp_path):
            # A new feed over data with a bad record *between* good ones.
            # Set ``supports_bad_input_test = False`` instead if that cannot be arranged.
            ...

A finite feed (a replay of files) must end its iterator. A live feed that never ends sets
``finite = False``; the suite then reads ``max_events`` events from it and stops, as a
pipeline that is asked to stop would. The feed's ``events`` may return a plain iterator or an
async iterator and its ``close`` may be async: the suite runs both on one event loop, the way
the runtime does.

:func:`collect_events` runs a feed outside the suite (for a plugin's own tests) and returns what
it yielded and reported.

This module imports pytest: use it from test code only.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, TypeGuard

import anyio
import attrs
import pytest

from tradeloom.awaitables import maybe_await
from tradeloom.components import Codec, DeadLetter, Feed, FeedContext
from tradeloom.errors import FeedError
from tradeloom.events import Bar, MarketEvent, MarketTick
from tradeloom.runtime.replay_position import id_base
from tradeloom.settings import ReconnectSettings
from tradeloom.strategy import Strategy, StrategyContext
from tradeloom.testing._support import (
    ManualClock,
    NumberedRecordingIds,
    RecordingIds,
    component_logger,
)

__all__ = [
    "FAST_RECONNECT",
    "FeedConformance",
    "FeedRun",
    "FeedTimeoutError",
    "collect_events",
    "make_feed_context",
]

FAST_RECONNECT = ReconnectSettings(
    max_attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05, jitter=0
)
"""Reconnection settings for tests: three quick attempts, no jitter."""


class FeedTimeoutError(AssertionError):
    """A feed neither yielded enough events nor ended within the time allowed."""


@attrs.define
class FeedRun:
    """What a feed did during :func:`collect_events`."""

    #: Everything the iterator yielded, in order (including anything that is not an event).
    items: list[Any] = attrs.Factory(list)
    #: What was passed to ``ctx.report_bad_input``, in order.
    dead_letters: list[DeadLetter] = attrs.Factory(list)
    #: Yielded items and dead letters interleaved in the order they happened.
    timeline: list[Any] = attrs.Factory(list)
    #: True when the iterator was exhausted (the feed ended by itself).
    ended: bool = False
    #: The id generator the feed was given; ``ids.minted`` holds every id it handed out.
    ids: RecordingIds = attrs.Factory(RecordingIds)
    #: Whether ``events`` returned an async iterator.
    asynchronous: bool = False
    #: What ``events`` returned.
    source: Any = None
    #: What was passed to ``ctx.report_lag``, in order.
    lags: list[dict[str, int]] = attrs.Factory(list)

    @property
    def events(self) -> list[MarketEvent]:
        """The yielded items that are market events."""
        return [item for item in self.items if isinstance(item, MarketTick | Bar)]


def make_feed_context(
    *,
    ids: RecordingIds | None = None,
    clock: ManualClock | None = None,
    reconnect: ReconnectSettings | None = None,
    codec: Codec | None = None,
    report_bad_input: Callable[[DeadLetter], None] | None = None,
    report_lag: Callable[[Mapping[str, int]], None] | None = None,
    consumer_group: str | None = None,
    skip_events: int = 0,
) -> FeedContext:
    """A :class:`FeedContext` like the runtime's, built from test stand-ins.

    Bad input is collected in a list (reachable as ``ctx.report_bad_input.letters``) unless a
    ``report_bad_input`` callable is given; a lag the feed reports goes to ``report_lag`` (or
    nowhere). ``consumer_group``: the group the transport would name for the feed.
    ``skip_events``: what a restarted replay leaves out (see ``FeedContext.skip_events``)."""
    if report_bad_input is None:
        letters: list[DeadLetter] = []

        def collect(letter: DeadLetter) -> None:
            letters.append(letter)

        collect.letters = letters  # type: ignore[attr-defined]
        report_bad_input = collect
    context = FeedContext(
        ids=ids or RecordingIds(),
        clock=clock or ManualClock(),
        reconnect=reconnect or FAST_RECONNECT,
        logger=component_logger("feed"),
        report_bad_input=report_bad_input,
        codec=codec,
        consumer_group=consumer_group,
        skip_events=skip_events,
    )
    if report_lag is not None:
        context.report_lag = report_lag
    return context


def collect_events(
    feed: Feed,
    *,
    limit: int | None = None,
    timeout_seconds: float = 30.0,
    close: bool = True,
    reconnect: ReconnectSettings | None = None,
    codec: Codec | None = None,
    backend: str = "asyncio",
    consumer_group: str | None = None,
    skip_events: int = 0,
    ids: RecordingIds | None = None,
) -> FeedRun:
    """Run ``feed`` until its iterator ends or ``limit`` items were yielded, then (unless
    ``close=False``) call ``feed.close()`` and close the iterator, all on one event loop.
    ``consumer_group`` is what the context offers as the transport's group for the feed;
    ``skip_events``, the events an earlier run of a replay published (``ctx.skip_events``);
    ``ids``, the generator the feed gets (a new :class:`RecordingIds` unless given).

    The clock the feed gets moves to each event's timestamp, as the pipeline's does. Raises
    :class:`FeedTimeoutError` when the feed takes longer than ``timeout_seconds`` in all: an
    async feed is cancelled; a plain iterator is interrupted by ``SIGALRM`` also inside a call
    that does not return (on Unix, from the main thread; elsewhere it is checked between
    items)."""
    run = FeedRun() if ids is None else FeedRun(ids=ids)
    clock = ManualClock()

    def report(letter: DeadLetter) -> None:
        run.dead_letters.append(letter)
        run.timeline.append(letter)

    ctx = make_feed_context(
        ids=run.ids,
        clock=clock,
        reconnect=reconnect,
        codec=codec,
        report_bad_input=report,
        report_lag=lambda lags: run.lags.append(dict(lags)),
        consumer_group=consumer_group,
        skip_events=skip_events,
    )

    def take(item: Any) -> bool:
        """Record one yielded item; return True when the limit is reached."""
        run.items.append(item)
        run.timeline.append(item)
        timestamp = getattr(item, "ts", None)
        if _is_utc(timestamp):  # a naive one is the conformance tests' to report
            clock.advance(timestamp)
        return limit is not None and len(run.items) >= limit

    async def consume() -> None:
        source = feed.events(ctx)
        run.source = source
        run.asynchronous = hasattr(source, "__aiter__")
        try:
            with anyio.fail_after(timeout_seconds):
                if limit is not None and limit <= 0:
                    return
                if run.asynchronous:
                    async for item in source:  # type: ignore[union-attr]
                        if take(item):
                            return
                else:
                    clock_started = anyio.current_time()
                    with _interrupted_after(timeout_seconds):
                        for item in iter(source):  # type: ignore[arg-type]
                            if take(item):
                                return
                            if anyio.current_time() - clock_started > timeout_seconds:
                                raise TimeoutError
                run.ended = True
        except TimeoutError as exc:
            blocked = (
                " (interrupted in a call that did not return: a plain iterator must not block)"
                if isinstance(exc, _Blocked)
                else ""
            )
            raise FeedTimeoutError(
                f"{type(feed).__name__} yielded {len(run.items)} item(s) in "
                f"{timeout_seconds:g}s without "
                + (f"reaching the limit of {limit}" if limit is not None else "ending")
                + f"{blocked}; a finite feed must end its iterator (a live feed sets "
                "finite = False)"
            ) from None
        finally:
            if close:
                await maybe_await(feed.close())
                await _close_iterator(source)

    anyio.run(consume, backend=backend)
    return run


class _Blocked(TimeoutError):
    """Raised by the alarm of :func:`_interrupted_after`."""


@contextmanager
def _interrupted_after(seconds: float) -> Iterator[None]:
    """Raise :class:`_Blocked` in the main thread after ``seconds``, also inside a blocking
    call (a socket read, a sleep): a plain iterator runs on the event loop's thread, where a
    timeout of the loop cannot reach it. Does nothing where there is no ``SIGALRM`` timer
    (Windows), off the main thread, or when the timer or ``SIGALRM`` is in use already."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if usable and (
        signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)
        or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None)
    ):
        usable = False  # the alarm is someone else's (pytest-timeout's, say): left alone
    if not usable or seconds <= 0:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise _Blocked

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


async def _close_iterator(source: Any) -> None:
    closer = getattr(source, "aclose", None) or getattr(source, "close", None)
    if closer is not None:
        await maybe_await(closer())


def _content(event: Any) -> Any:
    """An event without its id (a new one each run)."""
    dump = getattr(event, "model_dump", None)
    return dump(exclude={"event_id"}) if dump is not None else event


def _call_close(feed: Feed, backend: str) -> None:
    async def close() -> None:
        await maybe_await(feed.close())

    anyio.run(close, backend=backend)


class _Probe(Strategy):
    """Records the market events a pipeline delivers; asks it to stop after ``limit``."""

    def __init__(self, limit: int, stop: Callable[[], None]) -> None:
        self.seen: list[MarketEvent] = []
        self.limit = limit
        self.stop = stop

    def _record(self, event: MarketEvent) -> None:
        self.seen.append(event)
        if len(self.seen) == self.limit:
            self.stop()

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self._record(tick)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self._record(bar)


# --------------------------------------------------------------------------------------------
# The suite


class FeedConformance:
    """Contract tests for a :class:`~tradeloom.components.Feed`.

    Subclass it (name the subclass ``Test...``), override the :meth:`feed` fixture and either
    the :meth:`bad_input_feed` fixture or set ``supports_bad_input_test = False``. Each test
    gets a new feed.
    """

    #: The feed ends by itself (a replay). Set False for a live feed that runs until stopped.
    finite: ClassVar[bool] = True
    #: Most events read from the feed in one test (all a live feed is asked for).
    max_events: ClassVar[int] = 10_000
    #: How long one test may wait for the feed.
    timeout_seconds: ClassVar[float] = 30.0
    #: When set, the ``feed`` fixture's data must give exactly this many events.
    expected_events: ClassVar[int | None] = None
    #: Set False when bad input cannot be arranged; the bad-input test is then skipped.
    supports_bad_input_test: ClassVar[bool] = True
    #: Event loop the suite uses for async feeds (an anyio backend name).
    anyio_backend_name: ClassVar[str] = "asyncio"

    # ---- what a feed provides ------------------------------------------------------------

    @pytest.fixture
    def feed(self) -> Feed:
        """Override: return a new feed over clean data (at least one event, no bad records)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the `feed` fixture to return a new Feed "
            "over clean data"
        )

    @pytest.fixture
    def bad_input_feed(self) -> Feed:
        """Override: return a new feed whose data holds at least one bad record followed by
        good ones. The feed must report each bad record to ``ctx.report_bad_input`` and go on."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the `bad_input_feed` fixture or set "
            "supports_bad_input_test = False"
        )

    # ---- plumbing --------------------------------------------------------------------------

    def collect(
        self,
        feed: Feed,
        *,
        limit: int | None = None,
        close: bool = True,
        skip_events: int = 0,
        ids: RecordingIds | None = None,
    ) -> FeedRun:
        """Run ``feed`` with this suite's limits (see :func:`collect_events`)."""
        if limit is None:
            limit = self.max_events if not self.finite else self.max_events + 1
        return collect_events(
            feed,
            limit=limit,
            timeout_seconds=self.timeout_seconds,
            close=close,
            backend=self.anyio_backend_name,
            skip_events=skip_events,
            ids=ids,
        )

    @pytest.fixture
    def conformance_feed_run(self, feed: Feed) -> FeedRun:
        """The ``feed`` fixture, run to its end (or to ``max_events`` for a live feed)."""
        run = self.collect(feed)
        if self.finite and not run.ended:
            pytest.fail(
                f"{type(feed).__name__} gave more than max_events={self.max_events} events; "
                "raise max_events or use less data in the feed fixture"
            )
        return run

    # ---- shape -------------------------------------------------------------------------------

    def test_is_a_feed(self, feed: Feed) -> None:
        assert isinstance(feed, Feed), (
            f"the feed fixture returned {type(feed).__name__}, not a tradeloom.components.Feed"
        )
        # Closing a feed that was never started must work: a pipeline whose assembly fails
        # closes every component it built.
        _call_close(feed, self.anyio_backend_name)

    def test_events_returns_an_iterator(self, conformance_feed_run: FeedRun) -> None:
        source = conformance_feed_run.source
        assert hasattr(source, "__anext__") or hasattr(source, "__next__"), (
            f"events() must return an iterator or an async iterator (e.g. be a generator), "
            f"got {type(source).__name__}"
        )

    def test_yields_market_events(self, conformance_feed_run: FeedRun) -> None:
        assert conformance_feed_run.items, "the feed fixture's data gave no events"
        for index, item in enumerate(conformance_feed_run.items):
            assert isinstance(item, MarketTick | Bar), (
                f"item {index} is a {type(item).__name__}; a feed yields MarketTick or Bar only"
            )
        if self.expected_events is not None:
            assert len(conformance_feed_run.items) == self.expected_events
        if not self.finite:
            assert len(conformance_feed_run.items) == self.max_events

    def test_clean_data_reports_no_bad_input(self, conformance_feed_run: FeedRun) -> None:
        assert conformance_feed_run.dead_letters == [], (
            "the feed fixture's data is meant to be clean, but the feed reported: "
            + "; ".join(letter.reason for letter in conformance_feed_run.dead_letters[:5])
        )

    def test_events_are_valid(self, conformance_feed_run: FeedRun) -> None:
        for event in conformance_feed_run.events:
            if isinstance(event, Bar):
                assert event.ts >= event.end, (
                    f"{event!r}: a bar's ts must not be before its end (it is known only once "
                    "complete; anything earlier is look-ahead)"
                )
            assert _is_utc(event.ts), f"{event!r}: ts is not a UTC datetime"
            assert isinstance(event.price, Decimal), f"{event!r}: the price is not a Decimal"
            # Builders that skip validation (model_construct, fast paths) must still produce
            # events the model accepts, with exact Decimals.
            again = type(event).model_validate(event.model_dump())
            assert again == event, f"{event!r} does not survive validation unchanged"

    def test_event_ids_come_from_the_context(self, conformance_feed_run: FeedRun) -> None:
        ids = [event.event_id for event in conformance_feed_run.events]
        assert len(set(ids)) == len(ids), "two events share an event_id"
        foreign = [event_id for event_id in ids if event_id not in conformance_feed_run.ids.minted]
        assert not foreign, (
            f"{len(foreign)} event id(s) were not minted by ctx.ids (e.g. {foreign[0]}); take "
            "every event_id from ctx.ids.new_id() so the configured id generator is used"
        )

    def test_time_order_per_instrument(self, conformance_feed_run: FeedRun) -> None:
        last: dict[str, Any] = {}
        for index, event in enumerate(conformance_feed_run.events):
            if not _is_utc(event.ts):
                continue  # test_events_are_valid says so
            previous = last.get(event.instrument)
            assert previous is None or event.ts >= previous, (
                f"event {index} for {event.instrument} at {event.ts} comes after one at "
                f"{previous}: events must be in time order per instrument"
            )
            last[event.instrument] = event.ts

    def test_a_replay_leaves_out_what_an_earlier_run_published(self, feed: Feed) -> None:
        if not getattr(feed, "replays_from_start", False):
            pytest.skip("only a feed that replays_from_start is told what an earlier run published")
        base = id_base(RecordingIds())
        full = self.collect(feed, ids=NumberedRecordingIds(base)).events
        skip = len(full) // 2
        again = self.collect(feed, skip_events=skip, ids=NumberedRecordingIds(base, skip)).events
        assert [_content(event) for event in again] == [_content(event) for event in full[skip:]], (
            f"with ctx.skip_events = {skip}, events() must give the events after the first "
            f"{skip} of a full run: a restarted feed role goes on there"
        )
        assert [event.event_id for event in again] == [event.event_id for event in full[skip:]], (
            "take ids from ctx.ids only for the events after ctx.skip_events, one per event in "
            "order: the runtime numbers them, so that an event published again has its id"
        )

    # ---- ending and closing --------------------------------------------------------------------

    def test_finite_feed_ends(self, conformance_feed_run: FeedRun) -> None:
        if not self.finite:
            pytest.skip("a live feed (finite = False) runs until it is stopped")
        assert conformance_feed_run.ended

    def test_close_after_a_partial_read(self, feed: Feed) -> None:
        # A pipeline that is stopped leaves the iterator unfinished and closes the feed.
        run = self.collect(feed, limit=1)
        assert len(run.items) == 1
        _call_close(feed, self.anyio_backend_name)  # and a second close is harmless

    def test_close_twice_after_the_end(self, feed: Feed) -> None:
        run = self.collect(feed)
        assert run.items
        _call_close(feed, self.anyio_backend_name)

    # ---- bad input ------------------------------------------------------------------------------

    def test_bad_input_is_reported_and_skipped(self, request: pytest.FixtureRequest) -> None:
        if not self.supports_bad_input_test:
            pytest.skip(f"{type(self).__name__} sets supports_bad_input_test = False")
        feed = request.getfixturevalue("bad_input_feed")
        try:
            run = self.collect(feed)
        except FeedTimeoutError:
            raise
        except Exception as exc:  # the feed's own error, shown with the contract it broke
            pytest.fail(
                f"the feed raised {type(exc).__name__} on bad input; it must pass bad records "
                f"to ctx.report_bad_input and skip them ({exc})"
            )
        assert run.dead_letters, "the bad_input_feed fixture's bad record was not reported"
        for letter in run.dead_letters:
            assert isinstance(letter, DeadLetter), (
                f"report_bad_input got a {type(letter).__name__}, not a DeadLetter"
            )
            assert letter.reason.strip(), "a dead letter needs a reason"
            assert letter.source.strip(), "a dead letter needs a source"
            assert isinstance(letter.raw, bytes), "DeadLetter.raw holds the refused bytes"
            assert letter.ts.utcoffset() is not None, "a dead letter's ts must be tz-aware"
        first_bad = next(i for i, x in enumerate(run.timeline) if isinstance(x, DeadLetter))
        assert any(isinstance(x, MarketTick | Bar) for x in run.timeline[first_bad:]), (
            "no event came after the first bad record: the feed must go on after bad input "
            "(the bad_input_feed fixture needs good records after a bad one)"
        )
        assert all(isinstance(item, MarketTick | Bar) for item in run.items)

    # ---- in a pipeline ------------------------------------------------------------------------

    def test_runs_in_a_pipeline(self, feed: Feed) -> None:
        from tradeloom.runtime.pipeline import Pipeline
        from tradeloom.settings import Settings

        settings = Settings(persistence={"name": "memory"}, reconnect=FAST_RECONNECT)
        holder: list[Pipeline] = []
        probe = _Probe(self.max_events, lambda: holder[0].stop())
        pipeline = Pipeline(settings, mode="backtest", feed=feed, strategies={"probe": probe})
        holder.append(pipeline)

        async def run() -> Any:
            with anyio.fail_after(self.timeout_seconds):
                return await pipeline.run()

        try:
            # A plain iterator runs on the loop's thread: past the loop's own timeout, the
            # alarm stops one that blocks in a call that does not return.
            with _interrupted_after(self.timeout_seconds + 1):
                result = anyio.run(run, backend=self.anyio_backend_name)
        except (_Blocked, FeedError) as exc:
            # Raised inside the feed's call: the pipeline reports it as the feed's failure.
            if not isinstance(exc, _Blocked) and not isinstance(exc.__cause__, _Blocked):
                raise
            raise FeedTimeoutError(
                f"{type(feed).__name__} did not let the pipeline finish within "
                f"{self.timeout_seconds:g}s: interrupted in a call that did not return (a plain "
                "iterator must not block)"
            ) from None
        assert probe.seen, "the strategy saw no market events"
        assert result.market_events >= len(probe.seen)
        assert result.dead_letters == []
        assert result.first_event_time is not None
        if self.finite:
            assert result.market_events == len(probe.seen)


def _is_utc(moment: object) -> TypeGuard[datetime]:
    return isinstance(moment, datetime) and moment.utcoffset() == timedelta(0)
