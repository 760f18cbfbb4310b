"""Micro benchmarks, run as their own process by run.py (or alone):

- codec: ``encode`` + ``decode`` round trips per second of CPU time, per event type, with the
  stock codec (``decimal``);
- ids: ids per second of CPU time from the stock ``uuid7`` generator;
- tick-to-fill latency in one process: from the moment a tick leaves the feed to the moment
  its fill has been applied by every stage (the fill's last subscriber sees it), for the
  SMA(10/30) workload with ``fill_at = "last"`` (the tick that makes the signal is the one
  that fills it) and ``"next"`` (the fill comes with the next tick); plus the time each tick
  takes through all stages, fill or not;
- one order's life cycle: ``ctx.buy()`` returns after the signal passed the validators, the
  paper trader filled it and every portfolio applied the fill (the in-memory transport
  delivers depth-first), so timing that call times the whole cycle. Measured with no
  validator and with the four stock ones.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from bench_common import emit, peak_rss_mb

import tradeloom
from tradeloom import hookimpl
from tradeloom.components import Feed, FeedContext
from tradeloom.events import (
    Bar,
    Fill,
    HealthReport,
    MarketEvent,
    MarketTick,
    Order,
    PortfolioSnapshot,
    Position,
    Rejection,
    Severity,
    Side,
    Signal,
)
from tradeloom.runtime.transport import Topics
from tradeloom.strategy import Strategy, StrategyContext

T0 = datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=UTC)
ID = UUID("01900000-0000-7000-8000-000000000001")

STOCK_VALIDATORS = [
    {"name": "no_short"},
    {"name": "max_position", "params": {"limit": "10"}},
    {"name": "max_order_notional", "params": {"limit": "100000"}},
    {"name": "price_band", "params": {"max_deviation_bps": "100"}},
]


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99, p99.9, max and mean of nanosecond samples, in microseconds."""
    if not samples_ns:
        return {"count": 0}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(p: float) -> float:
        index = min(n - 1, max(0, int(p * n + 0.999999) - 1))
        return ordered[index] / 1000

    return {
        "count": n,
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "p99_9_us": at(0.999),
        "max_us": ordered[-1] / 1000,
        "mean_us": sum(ordered) / n / 1000,
    }


# --------------------------------------------------------------------------------------------
# Codec and ids


def sample_events() -> dict[str, Any]:
    signal = Signal(
        event_id=ID,
        ts=T0,
        strategy_id="sma",
        instrument="SYN",
        side=Side.BUY,
        quantity=Decimal("1"),
    )
    return {
        "market_tick": MarketTick(
            event_id=ID,
            ts=T0,
            instrument="SYN",
            last_price=Decimal("100.01"),
            bid=Decimal("100.00"),
            ask=Decimal("100.02"),
            volume=Decimal("1200"),
        ),
        "bar": Bar(
            event_id=ID,
            ts=T0 + timedelta(minutes=1),
            instrument="SYN",
            open=Decimal("100.01"),
            high=Decimal("100.05"),
            low=Decimal("99.98"),
            close=Decimal("100.03"),
            volume=Decimal("7875"),
            start=T0,
            end=T0 + timedelta(minutes=1),
        ),
        "signal": signal,
        "order": Order(
            event_id=ID,
            ts=T0,
            signal_id=ID,
            strategy_id="sma",
            instrument="SYN",
            side=Side.BUY,
            quantity=Decimal("1"),
        ),
        "rejection": Rejection(
            event_id=ID,
            ts=T0,
            signal=signal,
            validator="max_position",
            reason="position after order 11 would exceed limit 10 for SYN",
        ),
        "fill": Fill(
            event_id=ID,
            ts=T0,
            order_id=ID,
            signal_id=ID,
            strategy_id="sma",
            instrument="SYN",
            side=Side.BUY,
            quantity=Decimal("1"),
            price=Decimal("100.01"),
        ),
        "portfolio_snapshot": PortfolioSnapshot(
            event_id=ID,
            ts=T0,
            portfolio_id="sma",
            cash=Decimal("99899.99"),
            positions={
                "SYN": Position(
                    quantity=Decimal("1"),
                    average_price=Decimal("100.01"),
                    realized_pnl=Decimal("-3.25"),
                    last_price=Decimal("100.02"),
                )
            },
            equity=Decimal("100000.01"),
            fills_applied=12,
            last_fill_id=ID,
        ),
        "health_report": HealthReport(
            event_id=ID,
            ts=T0,
            stage="feed",
            check="market_data_freshness",
            severity=Severity.WARNING,
            message="no market data for 12.5s",
            age_seconds=12.5,
        ),
    }


def bench_codec(rounds: int) -> dict[str, Any]:
    from tradeloom.plugins import load_plugin_manager
    from tradeloom.settings import Settings

    codec = load_plugin_manager(Settings()).create("codec", "decimal")
    per_type: dict[str, float] = {}
    for name, event in sample_events().items():
        encode, decode = codec.encode, codec.decode
        assert decode(encode(event)) == event
        started = time.process_time()
        for _ in range(rounds):
            decode(encode(event))
        per_type[name] = rounds / (time.process_time() - started)
    # A stream of distinct ticks (different ids, times and prices), as a broker carries them.
    ticks = [
        MarketTick(
            event_id=UUID(int=ID.int + i),
            ts=T0 + timedelta(seconds=i),
            instrument="SYN",
            last_price=Decimal(10_000 + i % 200) / 100,
        )
        for i in range(rounds)
    ]
    encode, decode = codec.encode, codec.decode
    started = time.process_time()
    for tick in ticks:
        decode(encode(tick))
    stream = rounds / (time.process_time() - started)
    return {
        "codec": "decimal",
        "rounds": rounds,
        "round_trips_per_second": per_type,
        "tick_stream_round_trips_per_second": stream,
    }


def bench_ids(count: int) -> dict[str, Any]:
    from tradeloom.plugins import load_plugin_manager
    from tradeloom.settings import Settings

    ids = load_plugin_manager(Settings()).create("id_generator", "uuid7")
    new_id = ids.new_id
    started = time.process_time()
    for _ in range(count):
        new_id()
    return {
        "generator": "uuid7",
        "count": count,
        "ids_per_second": count / (time.process_time() - started),
    }


# --------------------------------------------------------------------------------------------
# Latency


class TimedFeed(Feed):
    """Wraps a feed; remembers when each event left it and how long the pipeline took with
    the event before asking for the next one."""

    def __init__(self, inner: Feed) -> None:
        self.inner = inner
        self.sent_at = 0
        self.handling_ns: list[int] = []

    def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:  # type: ignore[override]
        clock = time.perf_counter_ns
        handling = self.handling_ns.append
        for event in self.inner.events(ctx):  # type: ignore[union-attr]
            sent = self.sent_at = clock()
            yield event
            handling(clock() - sent)

    def close(self) -> Any:
        return self.inner.close()


class FillTimer:
    """A plugin: subscribes last to the fills topic, so it sees a fill after every stage
    applied it, and records the time since the tick that caused it left the feed."""

    def __init__(self, feed: TimedFeed) -> None:
        self.feed = feed
        self.latencies_ns: list[int] = []

    @hookimpl
    def tradeloom_pipeline_started(self, pipeline: Any) -> None:
        feed = self.feed
        record = self.latencies_ns.append
        clock = time.perf_counter_ns

        def on_fill(topic: str, event: Any) -> None:
            record(clock() - feed.sent_at)

        pipeline.transport.subscribe("bench", (Topics.FILLS,), on_fill)


def bench_tick_to_fill(data: Path, fill_at: str) -> dict[str, Any]:
    from engine_tradeloom import settings as workload

    from tradeloom_replay import ReplayFeed

    config = workload(data, "tick")
    feed = TimedFeed(ReplayFeed(**config.pop("feed")["params"]))
    config["executor"]["params"]["fill_at"] = fill_at
    timer = FillTimer(feed)
    result = tradeloom.backtest(config, feed=feed, plugins=[timer])
    assert len(timer.latencies_ns) == result.trade_count
    return {
        "fill_at": fill_at,
        "ticks": result.market_events,
        "fills": result.trade_count,
        "tick_to_fill": percentiles(timer.latencies_ns),
        "tick_handling": percentiles(feed.handling_ns),
    }


class RoundTrips(Strategy):
    """Buys 1 on one tick, sells it on the next, timing each ``ctx.buy``/``ctx.sell``."""

    def __init__(self) -> None:
        self.cycle_ns: list[int] = []

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        position = ctx.position(tick.instrument)
        send: Callable[..., Any] = ctx.sell if position else ctx.buy
        started = time.perf_counter_ns()
        send(tick.instrument, 1)
        elapsed = time.perf_counter_ns() - started
        if ctx.position(tick.instrument) == position:
            raise AssertionError("the order was not filled within ctx.buy/ctx.sell")
        self.cycle_ns.append(elapsed)


def bench_life_cycle(orders: int, validators: list[dict[str, Any]]) -> dict[str, Any]:
    from tradeloom.testing import ticks

    events = ticks("SYN", [Decimal(10_000 + i % 7) / 100 for i in range(orders + 1)])
    strategy = RoundTrips()
    config: dict[str, Any] = {
        "executor": {"name": "paper", "params": {"fill_at": "last"}},
        "persistence": {"name": "memory"},
        "validators": validators,
    }
    result = tradeloom.backtest(config, strategies={"cycle": strategy}, events=events)
    assert result.trade_count == len(strategy.cycle_ns)
    return {
        "validators": [v["name"] for v in validators],
        "orders": len(strategy.cycle_ns),
        "life_cycle": percentiles(strategy.cycle_ns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks-file", type=Path, required=True)
    parser.add_argument("--codec-rounds", type=int, default=100_000)
    parser.add_argument("--ids", type=int, default=500_000)
    parser.add_argument("--orders", type=int, default=50_000)
    args = parser.parse_args()

    result: dict[str, Any] = {}
    result["codec"] = bench_codec(args.codec_rounds)
    gc.collect()
    result["ids"] = bench_ids(args.ids)
    gc.collect()
    result["tick_to_fill"] = [
        bench_tick_to_fill(args.ticks_file, fill_at) for fill_at in ("last", "next")
    ]
    gc.collect()
    result["order_life_cycle"] = [
        bench_life_cycle(args.orders, []),
        bench_life_cycle(args.orders, STOCK_VALIDATORS),
    ]
    result["peak_rss_mb"] = peak_rss_mb()
    emit(result)


if __name__ == "__main__":
    main()
