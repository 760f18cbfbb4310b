"""Market events handed to the stages directly on the in-process transport.

When the transport only calls the stages' handlers in this process (``local_subscribers``)
and nothing observes events per stage, the pipeline calls each stage's market method itself.
It must be the same run: same fills, same equity, same counters, same error messages, and it
must give way to the normal path as soon as a stage observer is attached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from tradeloom import Strategy, hookimpl
from tradeloom.components import Executor, Feed, FeedContext
from tradeloom.errors import BadInputError, ConfigError, StageError
from tradeloom.events import Event, MarketTick
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.delivery import block_delivery
from tradeloom.runtime.in_flight import IN_FLIGHT_KEY
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.runtime.status import PipelineStatus
from tradeloom.runtime.transport import Handler
from tradeloom.settings import Settings
from tradeloom.strategy import StrategyContext
from tradeloom.testing import bars, merge, ticks
from tradeloom_memory.transport import MemoryTransport
from tradeloom_sqlite.persistence import SqlitePersistence

PRICES = [Decimal(100) + Decimal((i * 37) % 23 - 11) / 4 for i in range(5000)]


class Alternate(Strategy):
    """Buys on every 7th tick while flat, sells on every 11th while long."""

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.seen = getattr(self, "seen", 0) + 1
        held = ctx.position(tick.instrument)
        if not held and self.seen % 7 == 0:
            ctx.buy(tick.instrument, 2)
        elif held and self.seen % 11 == 0:
            ctx.sell(tick.instrument, held)


class PublishOnly(MemoryTransport):
    """The memory transport without local_subscribers: every event goes through publish()."""

    def local_subscribers(self, topic: str) -> Sequence[Handler] | None:
        return None


class TransportPlugin:
    @hookimpl
    def tradeloom_register_transports(self) -> dict[str, Any]:
        return {"publish_only": PublishOnly}


def run(transport: str = "memory", plugins: Sequence[Any] = ()) -> tuple[Pipeline, Any]:
    settings = Settings(
        executor={"name": "paper", "params": {"fill_at": "next"}},
        pipeline={"transport": transport},
    )
    pipeline = Pipeline(
        settings,
        events=ticks("X", PRICES),
        strategies={"alt": Alternate()},
        plugins=[TransportPlugin(), *plugins],
    )
    return pipeline, anyio.run(pipeline.run)


def outcome(pipeline: Pipeline, result: Any) -> tuple[Any, ...]:
    return (
        [(f.ts, f.side, f.quantity, f.price) for f in result.fills],
        result.equity_curve.series(),
        result.equity_curve.max_drawdown,
        result.snapshots["alt"].cash,
        {role: counters.events_in for role, counters in pipeline.status.stages.items()},
        result.market_events,
        result.first_event_time,
        result.last_event_time,
    )


def test_direct_delivery_is_the_same_run_as_publishing() -> None:
    direct = run()
    published = run("publish_only")
    assert len(direct[1].fills) > 100
    assert outcome(*direct) == outcome(*published)
    counts = direct[0].status.stages
    assert counts["execution"].events_in == len(PRICES) + len(direct[1].fills)  # ticks, orders
    assert counts["portfolio"].events_in == len(PRICES) + len(direct[1].fills)  # ticks, fills


class ObserveFromTick:
    """Attaches a stage observer half way through the run, from inside a strategy."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.pipeline: Pipeline | None = None
        self.observed: list[tuple[str, str]] = []

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def observe(self, role: str, topic: str, event: Event, seconds: float) -> None:
        self.observed.append((role, topic))

    def strategy(self) -> Strategy:
        attach = self

        class Attaching(Alternate):
            def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
                super().on_tick(tick, ctx)
                if self.seen == attach.at:
                    assert attach.pipeline is not None
                    attach.pipeline.status.stage_observer = attach.observe

        return Attaching()


def test_an_observer_attached_during_the_run_sees_every_later_block() -> None:
    attach = ObserveFromTick(at=1500)
    settings = Settings(executor={"name": "paper", "params": {"fill_at": "next"}})
    pipeline = Pipeline(
        settings,
        events=ticks("X", PRICES),
        strategies={"alt": attach.strategy()},
        plugins=[attach],
    )
    result = anyio.run(pipeline.run)
    market = [role for role, topic in attach.observed if topic == "market"]
    # From the next block of 1024 events on, every tick is seen by each of the four stages.
    assert market.count("strategy") == len(PRICES) - 2048
    assert {role: market.count(role) for role in set(market)} == dict.fromkeys(
        ("execution", "portfolio", "risk", "strategy"), len(PRICES) - 2048
    )
    assert outcome(pipeline, result) == outcome(*run())


class FailingTrader(Executor):
    def __init__(self) -> None:
        self.seen = 0

    def on_market(self, event: Any) -> None:
        self.seen += 1
        if self.seen == 1100:
            raise ValueError("no quote")

    def on_order(self, order: Any) -> None:
        raise AssertionError("no orders expected")


class FailingTraderPlugin:
    @hookimpl
    def tradeloom_register_executors(self) -> dict[str, Any]:
        return {"failing": FailingTrader}


@pytest.mark.parametrize("transport", ["memory", "publish_only"])
def test_a_stage_failure_names_the_stage_on_either_path(transport: str) -> None:
    settings = Settings(executor={"name": "failing"}, pipeline={"transport": transport})

    class Idle(Strategy):
        pass

    events = ticks("X", PRICES)
    pipeline = Pipeline(
        settings,
        events=events,
        strategies={"idle": Idle()},
        plugins=[TransportPlugin(), FailingTraderPlugin()],
    )
    with pytest.raises(StageError) as caught:
        anyio.run(pipeline.run)
    assert str(caught.value) == (
        f"execution stage failed on market_tick {events[1099].event_id}: ValueError: no quote"
    )
    assert pipeline.status.stages["execution"].errors == 1
    # Counted up to the event it failed on, whose time is the latest: in the middle of a block.
    assert pipeline.status.market_events == pipeline.result.market_events == 1100
    assert pipeline.result.last_event_time == events[1099].ts


class RefusingTrader(FailingTrader):
    def on_market(self, event: Any) -> None:
        pass

    def on_order(self, order: Any) -> None:
        raise RuntimeError("venue closed")


class RefusingTraderPlugin:
    @hookimpl
    def tradeloom_register_executors(self) -> dict[str, Any]:
        return {"refusing": RefusingTrader}


@pytest.mark.parametrize("transport", ["memory", "publish_only"])
def test_an_executor_failing_on_an_order_is_named_not_blamed_on_the_strategy(
    transport: str,
) -> None:
    settings = Settings(executor={"name": "refusing"}, pipeline={"transport": transport})
    pipeline = Pipeline(
        settings,
        events=ticks("X", PRICES[:50]),
        strategies={"alt": Alternate()},
        plugins=[TransportPlugin(), RefusingTraderPlugin()],
    )
    with pytest.raises(StageError) as caught:
        anyio.run(pipeline.run)
    assert type(caught.value) is StageError  # not a StrategyError from inside ctx.buy
    assert str(caught.value).startswith("execution stage failed on order ")
    assert str(caught.value).endswith(": RuntimeError: venue closed")
    assert pipeline.status.stages["execution"].errors == 1
    assert pipeline.status.stages["execution"].events_in == 7 + 1  # ticks so far, the order


class Listener:
    """A plugin that subscribes its own handlers when the pipeline starts, as monitoring and
    benchmark plugins do: they must get every event, direct delivery or not."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {"market": 0, "fills": 0, "signals": 0}

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Pipeline) -> None:
        def count(topic: str, event: Event) -> None:
            self.seen[topic] += 1

        pipeline.transport.subscribe("listener", tuple(self.seen), count)


def test_a_handler_subscribed_when_the_run_starts_gets_every_event() -> None:
    listener = Listener()
    pipeline, result = run(plugins=[listener])
    assert listener.seen == {
        "market": len(PRICES),
        "fills": len(result.fills),
        "signals": len(result.fills),
    }
    assert outcome(pipeline, result) == outcome(*run())


class ListFeed(Feed):
    """A feed whose events() returns a list, not an iterator."""

    def __init__(self, events: list[MarketTick]) -> None:
        self.events_given = events

    def events(self, ctx: FeedContext) -> list[MarketTick]:  # type: ignore[override]
        return self.events_given


def test_a_feed_may_return_any_iterable() -> None:
    settings = Settings(executor={"name": "paper", "params": {"fill_at": "next"}})
    events = ticks("X", PRICES[:3000])
    pipeline = Pipeline(settings, feed=ListFeed(events), strategies={"alt": Alternate()})
    result = anyio.run(pipeline.run)
    assert result.market_events == 3000
    assert result.first_event_time == events[0].ts and result.last_event_time == events[-1].ts
    assert pipeline.status.stages["strategy"].events_in == 3000 + len(result.fills)


class PricedStage:
    """What block_delivery needs of a stage, with a market method that takes the price."""

    def __init__(self) -> None:
        self.counters = SimpleNamespace(events_in=0)
        self.calls: list[tuple[str, Any, Any]] = []

    def priced_market_method(self) -> Any:
        return self.on_market_at

    def on_market(self, event: Any) -> None:
        self.on_market_at(event, event.price, event.ts, event.instrument)

    def on_market_at(self, event: Any, price: Decimal, ts: datetime, instrument: str) -> None:
        assert (ts, instrument) == (event.ts, event.instrument)
        self.calls.append(("priced", event, price))

    def failed(self, event: Any, exc: Exception) -> StageError:
        return StageError(f"failed on {event.event_id}: {exc}")


class OverridingStage(PricedStage):
    def on_market(self, event: Any) -> None:
        self.calls.append(("own", event, None))


def test_delivery_passes_the_price_only_for_the_stage_own_market_method() -> None:
    events = merge(ticks("X", [Decimal("10.5"), Decimal(11)]), bars("Y", ["12.25"]))
    priced, overriding, replaced = PricedStage(), OverridingStage(), PricedStage()
    replaced_calls: list[Any] = []
    replaced.on_market = replaced_calls.append  # type: ignore[method-assign]
    targets: list[tuple[Any, Any]] = [
        (priced, priced.on_market),
        (overriding, overriding.on_market),
        (replaced, replaced.on_market),
    ]
    status = PipelineStatus()
    deliver = block_delivery(targets, SimulatedClock(), status)
    assert deliver(events) == 3
    assert status.market_events == 3
    assert status.last_market_time == {"X": events[1].ts, "Y": events[2].ts}
    assert priced.calls == [("priced", event, event.price) for event in events]
    prices = [price for _, _, price in priced.calls]
    assert prices == [Decimal("10.5"), Decimal(11), Decimal("12.25")]
    assert overriding.calls == [("own", event, None) for event in events]
    assert replaced_calls == events and replaced.calls == []
    assert priced.counters.events_in == overriding.counters.events_in == 3


class MidTick(MarketTick):
    """A tick type of one's own whose price is the mid-quote, not the last trade."""

    @property
    def price(self) -> Decimal:
        assert self.bid is not None and self.ask is not None
        return (self.bid + self.ask) / 2


def test_delivery_gives_an_event_subclass_its_own_price() -> None:
    plain = ticks("X", [Decimal("10.5")])[0]
    mid = MidTick(**{**plain.model_dump(), "bid": Decimal(10), "ask": Decimal(12)})
    stage = PricedStage()
    deliver = block_delivery([(stage, stage.on_market)], SimulatedClock(), PipelineStatus())
    assert deliver([plain, mid]) == 2
    assert [price for _, _, price in stage.calls] == [Decimal("10.5"), Decimal(11)]


class ExecutorLike:
    """An executor's market methods: on_market, and the priced one it offers, taking what
    delivery reads."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def priced_market_method(self) -> Any:
        return self.on_market_at

    def on_market(self, event: Any) -> None:
        self.on_market_at(event, event.price, event.ts, event.instrument)

    def on_market_at(self, event: Any, price: Decimal, ts: datetime, instrument: str) -> None:
        self.calls.append(("priced", event, price, ts, instrument))


class HelperNamedLikeIt:
    """An executor of its own with a helper that happens to be called on_market_at, taking
    other arguments: without priced_market_method, delivery calls on_market."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_market(self, event: Any) -> None:
        self.on_market_at(event, event.price)

    def on_market_at(self, event: Any, price: Decimal) -> None:
        self.calls.append(("helper", event, price))


class OverridingExecutorLike(ExecutorLike):
    def on_market(self, event: Any) -> None:
        self.calls.append(("own", event))


def test_delivery_passes_the_price_to_an_executor_only_for_its_own_market_method() -> None:
    events = merge(ticks("X", [Decimal("10.5"), Decimal(11)]), bars("Y", ["12.25"]))
    stage = PricedStage()  # the execution stage, whose market route is the executor's method
    priced, overriding, replaced = ExecutorLike(), OverridingExecutorLike(), ExecutorLike()
    helper = HelperNamedLikeIt()
    replaced_calls: list[Any] = []
    replaced.on_market = replaced_calls.append  # type: ignore[method-assign]
    targets: list[tuple[Any, Any]] = [
        (stage, priced.on_market),
        (stage, overriding.on_market),
        (stage, replaced.on_market),
        (stage, helper.on_market),
    ]
    deliver = block_delivery(targets, SimulatedClock(), PipelineStatus())
    assert deliver(events) == 3
    assert priced.calls == [("priced", e, e.price, e.ts, e.instrument) for e in events]
    assert overriding.calls == [("own", event) for event in events]
    assert replaced_calls == events and replaced.calls == []
    assert helper.calls == [("helper", event, event.price) for event in events]
    assert stage.calls == []


class AsyncList(Feed):
    def __init__(self, events: list[MarketTick]) -> None:
        self.given = events

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        for event in self.given:
            yield event


@pytest.mark.parametrize("path", ["memory", "publish_only", "async"])
def test_a_backtest_refuses_events_out_of_time_order(path: str) -> None:
    """An event earlier than the clock could never be traded as of its time: joining two
    instruments' lists without merging them, say. Refused, not delivered, whatever the path."""
    x, y = ticks("X", PRICES[:3000]), ticks("Y", PRICES[:10])
    events = x + y  # Y's ticks start at the time X's did
    settings = Settings(pipeline={"transport": "memory" if path == "async" else path})
    given: dict[str, Any] = {"feed": AsyncList(events)} if path == "async" else {"events": events}
    pipeline = Pipeline(
        settings, strategies={"alt": Alternate()}, plugins=[TransportPlugin()], **given
    )
    with pytest.raises(BadInputError) as caught:
        anyio.run(pipeline.run)
    source = "feed AsyncList" if path == "async" else "events="
    assert str(caught.value) == (
        f"{source} gave a market event for Y at {y[0].ts.isoformat()} after one at "
        f"{x[-1].ts.isoformat()}: a backtest needs its events in time order "
        "(tradeloom.testing.merge puts several lists of events in order; the replay feed "
        "merges its files by time)"
    )
    assert pipeline.result.market_events == 3000
    assert pipeline.status.stages["strategy"].events_in - len(pipeline.result.fills) == 3000


@pytest.mark.parametrize("clock", ["auto", "simulated"])
def test_a_live_run_takes_times_that_jump_back(clock: str) -> None:
    x, y = ticks("X", PRICES[:30]), ticks("Y", PRICES[:10])
    settings = Settings(pipeline={"clock": clock})
    pipeline = Pipeline(settings, mode="live", events=x + y, strategies={"alt": Alternate()})
    result = anyio.run(pipeline.run)
    assert result.market_events == 40


@pytest.mark.parametrize("path", ["memory", "publish_only", "async"])
def test_a_backtest_on_the_wall_clock_does_not_check_time_order(path: str) -> None:
    # Its clock is not the data's: an event earlier than the wall clock is no error.
    events = merge(ticks("X", PRICES[:50]), ticks("Y", PRICES[:50]))
    settings = Settings(
        pipeline={"clock": "wall", "transport": "memory" if path == "async" else path}
    )
    given: dict[str, Any] = {"feed": AsyncList(events)} if path == "async" else {"events": events}
    pipeline = Pipeline(
        settings, strategies={"alt": Alternate()}, plugins=[TransportPlugin()], **given
    )
    assert anyio.run(pipeline.run).market_events == 100


def test_the_strategy_stage_declares_that_it_decides_again_on_market_events() -> None:
    # A broker transport takes back a failing strategy's output for a market event (the
    # restart makes it again), and only that: the pipeline tells it which role and topic.
    declared: list[tuple[str, tuple[str, ...]]] = []

    class Recording(MemoryTransport):
        def add_decided_again(self, role: str, topics: Sequence[str]) -> None:
            declared.append((role, tuple(topics)))

    _run_on(Recording)
    assert declared == [("strategy", ("market",))]


def _run_on(transport: type[MemoryTransport]) -> Pipeline:
    """Run the alternating strategy on 50 ticks over ``transport`` (registered as a plugin's,
    as any other transport is)."""

    class TransportPlugin:
        @hookimpl
        def tradeloom_register_transports(self) -> dict[str, Any]:
            return {"recording": transport}

    pipeline = Pipeline(
        Settings(pipeline={"transport": "recording"}),
        events=ticks("X", PRICES[:50]),
        strategies={"alt": Alternate()},
        plugins=[TransportPlugin()],
    )
    anyio.run(pipeline.run)
    return pipeline


def test_the_risk_and_execution_stages_declare_the_events_they_keep_waiting() -> None:
    # A broker transport commits no record past a signal waiting for a first price, or an
    # order waiting for a price to fill at: a process killed meanwhile reads them again.
    declared: dict[str, tuple[tuple[str, ...], Any]] = {}

    class Recording(MemoryTransport):
        def add_held_events(self, role: str, topics: Sequence[str], held: Any) -> None:
            declared[role] = (tuple(topics), held)

    pipeline = _run_on(Recording)
    assert {role: topics for role, (topics, _) in declared.items()} == {
        "execution": ("orders",),
        "risk": ("signals",),
    }
    stages = {stage.role: stage for stage in pipeline.stages}
    assert declared["execution"][1] == stages["execution"].waiting_ids
    assert declared["risk"][1] == stages["risk"].waiting_ids


def test_a_backtest_on_the_wall_clock_is_not_resumed_nor_keeps_a_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Its state is stamped with the wall clock: a resume would skip all of the data.
    state = {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}
    settings = Settings(pipeline={"clock": "wall"}, persistence=state)
    events = ticks("X", PRICES[:50])
    result = anyio.run(Pipeline(settings, events=events, strategies={"alt": Alternate()}).run)
    assert result.fills
    persistence = SqlitePersistence(path=str(tmp_path / "s.db"))
    persistence.open()
    try:
        assert IN_FLIGHT_KEY not in persistence.load_metadata()
    finally:
        persistence.close()
    with pytest.raises(ConfigError, match=r"a backtest on the wall clock .* cannot be resumed"):
        Pipeline(settings, events=events, strategies={"alt": Alternate()}, resume=True)
