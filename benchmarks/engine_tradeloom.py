"""One tradeloom backtest of the benchmark workload, run as its own process by run.py.

SMA(10/30) crossover, long or flat 1 unit, market orders filled at the next price by the
paper trader, zero commission, data streamed from CSV by the replay feed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench_common import current_rss_mb, emit, peak_rss_mb

STARTING_CASH = "100000"


def settings(path: Path, kind: str) -> dict[str, Any]:
    if kind == "tick":
        params: dict[str, Any] = {
            "path": str(path),
            "instrument": "SYN",
            "format": "custom",
            "columns": {"ts": "ts", "last_price": "price"},
        }
    else:
        params = {
            "path": str(path),
            "instrument": "SYN",
            "format": "custom",
            "columns": {
                "ts": "ts",
                "open": "open",
                "high": "high",
                "low": "low",
                "close": "close",
                "volume": "volume",
            },
            "bar_interval": "1min",
            "bar_timestamp": "start",
        }
    return {
        "feed": {"name": "replay", "params": params},
        "strategies": [
            {"name": "sma_cross", "id": "sma", "params": {"fast": 10, "slow": 30, "quantity": 1}}
        ],
        "executor": {"name": "paper", "params": {"fill_at": "next"}},
        "persistence": {"name": "memory"},
        "portfolio": {"starting_cash": STARTING_CASH},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--kind", choices=("tick", "bar"), required=True)
    parser.add_argument("--profile", type=Path, help="write cProfile stats to this file")
    parser.add_argument(
        "--no-gc", action="store_true", help="disable the cyclic garbage collector (its cost)"
    )
    args = parser.parse_args()
    if args.no_gc:
        import gc

        gc.disable()

    import tradeloom

    config = settings(args.data, args.kind)
    rss_before = current_rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(tradeloom.backtest, config)
        profiler.dump_stats(args.profile)
    else:
        result = tradeloom.backtest(config)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    pnl = result.final_equity - result.starting_equity
    emit(
        {
            "engine": "tradeloom",
            "kind": args.kind,
            "events": result.market_events,
            "seconds": wall,
            "cpu_seconds": cpu,
            "events_per_second": result.market_events / wall,
            "fills": result.trade_count,
            "round_trips": result.round_trips,
            "rejections": len(result.rejections),
            "pnl": str(pnl),
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_run_mb": rss_before,
        }
    )


if __name__ == "__main__":
    main()
