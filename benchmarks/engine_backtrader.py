"""The benchmark workload in backtrader, run as its own process by run.py.

The same strategy as tradeloom's ``sma_cross``: SMA(10/30) of the close, buy 1 unit on an
upward cross while flat, sell the position on a downward cross while long. backtrader's
``CrossOver`` uses the last non-zero difference, as ``sma_cross`` does. Market orders fill at
the next bar's open (default broker, no commission). Ticks are read as bars whose open, high,
low and close are the tick's price, so "the next bar's open" is the next tick's price.
Cerebro runs with its defaults (data preloaded, indicators computed in one vectorised pass).

backtrader computes in binary floats, where an SMA(10) and an SMA(30) of the same cent prices
can differ by a rounding error when they are equal in decimal, which makes crossings that did
not happen. So the averages are taken over the close in whole cents (integers, exact in a
float), an extra line the feed fills while it reads each row; orders and P&L stay in dollars.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench_common import current_rss_mb, emit, peak_rss_mb

STARTING_CASH = 100_000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--kind", choices=("tick", "bar"), required=True)
    args = parser.parse_args()

    import backtrader as bt

    class CentsCSVData(bt.feeds.GenericCSVData):  # type: ignore[misc]
        lines = ("cents",)
        params = (("cents", -1),)

        def _loadline(self, linetokens: list[str]) -> bool:
            loaded: bool = super()._loadline(linetokens)
            self.lines.cents[0] = round(self.lines.close[0] * 100)
            return loaded

    class SmaCross(bt.Strategy):  # type: ignore[misc]
        params = (("fast", 10), ("slow", 30))

        def __init__(self) -> None:
            fast = bt.indicators.SMA(self.data.cents, period=self.p.fast)
            slow = bt.indicators.SMA(self.data.cents, period=self.p.slow)
            self.cross = bt.indicators.CrossOver(fast, slow)
            self.fills = 0
            self.round_trips = 0

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills += 1

        def notify_trade(self, trade: Any) -> None:
            if trade.isclosed:
                self.round_trips += 1

        def next(self) -> None:
            cross = self.cross[0]
            if cross > 0:
                if not self.position:
                    self.buy(size=1)
            elif cross < 0 and self.position.size > 0:
                self.sell(size=self.position.size)

    common: dict[str, Any] = {
        "dataname": str(args.data),
        "dtformat": "%Y-%m-%d %H:%M:%S",
        "datetime": 0,
        "time": -1,
        "openinterest": -1,
    }
    if args.kind == "tick":
        columns = {"open": 1, "high": 1, "low": 1, "close": 1, "volume": -1}
        timeframe = bt.TimeFrame.Seconds
    else:
        columns = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
        timeframe = bt.TimeFrame.Minutes

    rss_before = current_rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(CentsCSVData(timeframe=timeframe, **common, **columns))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(STARTING_CASH)
    strategy = cerebro.run()[0]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    events = len(strategy.data)
    emit(
        {
            "engine": "backtrader",
            "kind": args.kind,
            "events": events,
            "seconds": wall,
            "cpu_seconds": cpu,
            "events_per_second": events / wall,
            "fills": strategy.fills,
            "round_trips": strategy.round_trips,
            "pnl": f"{cerebro.broker.getvalue() - STARTING_CASH:.2f}",
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_run_mb": rss_before,
        }
    )


if __name__ == "__main__":
    main()
