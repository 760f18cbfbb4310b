"""The benchmark workload in nautilus_trader, run as its own process (a peer of backtrader's).

The same strategy as tradeloom's ``sma_cross``: SMA(10/30) of the price, buy 1 unit on an
upward cross while flat, sell the position on a downward cross while long; a crossing is a
change of sign of fast - slow from the last non-zero difference (equal averages are none).
The low-level ``BacktestEngine`` runs one simulated venue with a cash account of 100,000 USD,
a netting order management system (one position per instrument: long 1 or flat) and an
``Equity`` instrument with zero maker and taker fees. Ticks are ``TradeTick`` data, bars are
``Bar`` data (``1-MINUTE-LAST-EXTERNAL``), both built by nautilus's own data wranglers from a
pandas frame of the CSV file.

Fills at the next price: a market order fills at once at the venue's current price, so the
venue gets a ``LatencyModel`` of 1 ns. An order sent while the strategy handles the data of
time t reaches the matching engine at t + 1 ns, which is after t and not later than the next
data point, so it fills at the next price:

- ticks: the venue's top-of-book follows the trade ticks (an ``L1_MBP`` book,
  ``trade_execution=True``), so the order fills at the next tick's price;
- bars: nautilus has no "fill at the next bar's open" mode (with ``bar_execution`` a bar
  moves the book through its open, high, low and close before a pending order arrives, which
  would fill at the close). So the bars do not move the book (``bar_execution=False``); each
  bar's open is given to the venue as a trade tick of its own, one nanosecond after the bar's
  start (the first trade of the minute), and the bar is stamped at its close
  (``ts_init = start + 1 min``, nautilus's convention). The order sent on bar t reaches the
  venue just after bar t + 1's open tick and fills at that open. The strategy does not
  subscribe to those ticks, but the engine processes them: a run over N bars handles 2N data
  points (``engine_data_points``); ``events`` counts the bars, as for backtrader.

With the latency, an order sent at tick t is still on its way when the strategy handles tick
t + 1 (backtrader has filled it by then). So "flat" and "long" count the orders on their way,
as tradeloom's ``sma_cross`` does: what the strategy holds is the portfolio's net position
plus the working orders in the cache. Orders on two ticks in a row happen (236 times in
ticks-1000000.csv): the second is sent while the first is still on its way and fills one tick
after it, as in backtrader. (Counting the filled position alone loses those orders: 7,445
fills instead of 7,541 on ticks-200000.csv.) With bars the order has filled before the next
bar. An order sent on the last tick or bar never fills (nor in backtrader).

The averages are nautilus's ``SimpleMovingAverage``, fed the price in whole cents through
``update_raw`` (from the price's fixed-point value, exact). It averages in binary floats: fed
dollars (its ``handle_trade_tick`` / ``handle_bar``), two averages of the same cent prices that
are equal in decimal can differ by a rounding error and make crossings that did not happen
(7,783 fills instead of 7,541 on ticks-200000.csv, 1,880 instead of 1,842 on bars-50000.csv).
On cents, each average is a sum of at most 30 integers (exact in a float) divided once, so
equal averages are the same float, and unequal ones differ by at least 1/30 of a cent, far
more than the rounding error; the crossings are exactly those of the exact averages.

Timed, as in engine_backtrader.py, from building the engine to the end of ``run()``: the
venue and instrument, reading the CSV (pandas), building the nautilus data objects and
adding them to the engine (which sorts the bars in among the open ticks), the run. Not
timed: importing nautilus_trader, reading the results and disposing of the engine. Logging is
bypassed (``bypass_logging``; at ``log_level="ERROR"`` the tick run took about 7% longer) and
the post-run analysis is off (backtrader runs without observers or analysers); the risk
engine's pre-trade checks run (its default). With no log, orders denied by the risk engine or
rejected by the venue are counted (``rejections``).
The P&L is the account's cash plus the position marked at the last price (the last tick's
price, the last bar's close), minus the starting cash, as backtrader's broker value.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
from bench_common import current_rss_mb, emit, peak_rss_mb
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import LatencyModel
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, StrategyConfig
from nautilus_trader.indicators.averages import SimpleMovingAverage
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar, BarType, TradeTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide, OrderStatus
from nautilus_trader.model.events import OrderDenied, OrderFilled, OrderRejected, PositionClosed
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import FIXED_PRECISION, Money, Price, Quantity
from nautilus_trader.persistence.wranglers import BarDataWrangler, TradeTickDataWrangler
from nautilus_trader.trading.strategy import Strategy

STARTING_CASH = 100_000
VENUE = Venue("SIM")
INSTRUMENT_ID = InstrumentId(Symbol("SYN"), VENUE)
BAR_TYPE = BarType.from_str(f"{INSTRUMENT_ID}-1-MINUTE-LAST-EXTERNAL")
RAW_PER_CENT = 10 ** (FIXED_PRECISION - 2)  # a Price's fixed-point units in one cent
ONE_MINUTE = pd.Timedelta(minutes=1)
ONE_NANOSECOND = pd.Timedelta(1, "ns")


class SmaCrossConfig(StrategyConfig, frozen=True):
    """What ``SmaCross`` trades: ticks of ``instrument_id``, or bars of ``bar_type``."""

    instrument_id: InstrumentId
    bar_type: BarType | None = None  # None: trade ticks
    fast: int = 10
    slow: int = 30
    quantity: int = 1


class SmaCross(Strategy):  # type: ignore[misc]  # nautilus_trader ships no stubs
    """SMA(fast/slow) crossover on trade ticks or bars, long ``quantity`` or flat."""

    def __init__(self, config: SmaCrossConfig) -> None:
        super().__init__(config)
        self.instrument_id = config.instrument_id
        self.bar_type = config.bar_type
        self.quantity = config.quantity
        self.fast = SimpleMovingAverage(config.fast)
        self.slow = SimpleMovingAverage(config.slow)
        self.last_sign = 0
        self.fills = 0
        self.round_trips = 0
        self.rejections = 0

    def on_start(self) -> None:
        if self.bar_type is None:
            self.subscribe_trade_ticks(self.instrument_id)
        else:
            self.subscribe_bars(self.bar_type)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self._update(tick.price.raw // RAW_PER_CENT)

    def on_bar(self, bar: Bar) -> None:
        self._update(bar.close.raw // RAW_PER_CENT)

    def _update(self, cents: int) -> None:
        fast, slow = self.fast, self.slow
        fast.update_raw(cents)
        slow.update_raw(cents)
        if not slow.initialized:
            return
        difference = fast.value - slow.value
        if difference > 0:
            sign = 1
        elif difference < 0:
            sign = -1
        else:
            return  # equal averages: no crossing, the last non-zero sign stays
        previous = self.last_sign
        if sign == previous:
            return
        self.last_sign = sign
        if not previous:
            return  # the first non-zero difference is no crossing
        holding = self._holding()
        if sign > 0:
            if holding == 0:
                self._submit(OrderSide.BUY, self.quantity)
        elif holding > 0:
            self._submit(OrderSide.SELL, holding)

    def _holding(self) -> int:
        """The net position once the orders on their way (and any still working) are done."""
        holding = int(self.portfolio.net_position(self.instrument_id))
        working = self.cache.orders_inflight(instrument_id=self.instrument_id)
        working += self.cache.orders_open(instrument_id=self.instrument_id)
        for order in working:
            left = int(order.leaves_qty)
            holding += left if order.side == OrderSide.BUY else -left
        return holding

    def _submit(self, side: OrderSide, quantity: int) -> None:
        order = self.order_factory.market(self.instrument_id, side, Quantity.from_int(quantity))
        self.submit_order(order)

    def on_order_filled(self, event: OrderFilled) -> None:
        self.fills += 1

    def on_position_closed(self, event: PositionClosed) -> None:
        self.round_trips += 1

    def on_order_denied(self, event: OrderDenied) -> None:
        self.rejections += 1  # by the risk engine

    def on_order_rejected(self, event: OrderRejected) -> None:
        self.rejections += 1  # by the venue


def read_csv(path: Path) -> pd.DataFrame:
    """The CSV file indexed by its ``ts`` column (UTC)."""
    frame = pd.read_csv(path)
    frame.index = pd.to_datetime(frame.pop("ts"), format="%Y-%m-%d %H:%M:%S", utc=True)
    return frame


def trades(frame: pd.DataFrame, prices: str) -> pd.DataFrame:
    """The frame a ``TradeTickDataWrangler`` takes: size 1, a trade id per row."""
    return pd.DataFrame(
        {"price": frame[prices].to_numpy(), "quantity": 1.0, "trade_id": range(len(frame))},
        index=frame.index,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--kind", choices=("tick", "bar"), required=True)
    parser.add_argument(
        "--fills", type=Path, help="also write every fill (ts,side,price) to this CSV file"
    )
    args = parser.parse_args()

    rss_before = current_rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    engine = BacktestEngine(
        BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True), run_analysis=False)
    )
    engine.add_venue(
        VENUE,
        oms_type=OmsType.NETTING,
        account_type=AccountType.CASH,
        base_currency=USD,
        starting_balances=[Money(STARTING_CASH, USD)],
        latency_model=LatencyModel(base_latency_nanos=1),
        bar_execution=False,
        trade_execution=True,
    )
    instrument = Equity(
        instrument_id=INSTRUMENT_ID,
        raw_symbol=INSTRUMENT_ID.symbol,
        currency=USD,
        price_precision=2,
        price_increment=Price.from_str("0.01"),
        lot_size=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
    )
    engine.add_instrument(instrument)
    frame = read_csv(args.data)
    ticks = TradeTickDataWrangler(instrument)
    if args.kind == "tick":
        engine.add_data(ticks.process(trades(frame, "price")), sort=False)  # in time order
        bar_type = None
    else:
        opens = trades(frame, "open")
        opens.index += ONE_NANOSECOND
        engine.add_data(ticks.process(opens), sort=False)
        wrangler = BarDataWrangler(BAR_TYPE, instrument)
        engine.add_data(wrangler.process(frame, ts_init_delta=ONE_MINUTE.value))
        bar_type = BAR_TYPE
    del frame
    strategy = SmaCross(SmaCrossConfig(instrument_id=INSTRUMENT_ID, bar_type=bar_type))
    engine.add_strategy(strategy)
    engine.run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    cache = engine.cache
    if bar_type is None:
        last_price = cache.trade_tick(INSTRUMENT_ID).price
    else:
        last_price = cache.bar(bar_type).close
    cash = cache.account_for_venue(VENUE).balance_total(USD).as_decimal()
    position = engine.portfolio.net_position(INSTRUMENT_ID)
    pnl = cash + position * last_price.as_decimal() - STARTING_CASH
    events = strategy.slow.count  # the ticks or bars the strategy handled
    emit(
        {
            "engine": "nautilus",
            "version": importlib.metadata.version("nautilus_trader"),
            "python": sys.version.split()[0],
            "kind": args.kind,
            "events": events,
            "engine_data_points": engine.iteration,
            "seconds": wall,
            "cpu_seconds": cpu,
            "events_per_second": events / wall,
            "fills": strategy.fills,
            "round_trips": strategy.round_trips,
            "rejections": strategy.rejections,
            "pnl": f"{pnl:.2f}",
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_run_mb": rss_before,
        }
    )
    if args.fills:
        write_fills(engine, args.fills)
    engine.dispose()


def write_fills(engine: BacktestEngine, path: Path) -> None:
    """Every fill as ``ts,side,price`` (side +1 buy, -1 sell), in time order."""
    filled = [o for o in engine.cache.orders() if o.status == OrderStatus.FILLED]
    with path.open("w") as out:
        for order in sorted(filled, key=lambda o: o.ts_last):
            stamp = pd.Timestamp(order.ts_last, tz="UTC")
            side = 1 if order.side == OrderSide.BUY else -1
            out.write(f"{stamp:%Y-%m-%d %H:%M:%S},{side},{Decimal(order.avg_px):.2f}\n")


if __name__ == "__main__":
    main()
