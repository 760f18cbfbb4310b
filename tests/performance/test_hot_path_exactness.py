"""The hot path's shortcuts give exactly what the plain computations give."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import uuid6

from tradeloom.events import Fill, MarketTick, Side
from tradeloom.portfolio import ZERO, Holding, PortfolioBook
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.portfolio_stage import PortfolioStage
from tradeloom.runtime.results import EquityCurve, RunResult
from tradeloom.runtime.stages import StageServices
from tradeloom.runtime.status import PipelineStatus
from tradeloom_memory.persistence import MemoryPersistence
from tradeloom_memory.transport import MemoryTransport
from tradeloom_uuid7.generator import Uuid7Generator

T0 = datetime(2024, 1, 2, tzinfo=UTC)


class PlainCurve:
    """The equity curve computed the obvious way: the last equity of each time, then every
    point, every other one dropped whenever there are more than ``max_points``, and the
    latest time's point at the end."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.by_time: dict[datetime, Decimal] = {}

    def add(self, ts: datetime, equity: Decimal) -> None:
        self.by_time[ts] = equity  # times come in order: a dict keeps them so

    def finish(self) -> tuple[list[tuple[datetime, Decimal]], Decimal | None, Decimal]:
        """(points, peak, max drawdown)."""
        times = list(self.by_time.items())
        peak: Decimal | None = None
        deepest = Decimal(0)
        for _, equity in times:
            if peak is None or equity > peak:
                peak = equity
            elif peak > 0:
                deepest = max(deepest, (peak - equity) / peak)
        points: list[tuple[datetime, Decimal]] = []
        stride = 1
        for count, point in enumerate(times[:-1]):
            if count % stride == 0:
                points.append(point)
                if len(points) > self.max_points:
                    points = points[::2]
                    stride *= 2
        return points, peak, deepest


@pytest.mark.parametrize("seed", range(30))
def test_equity_curve_keeps_the_same_points_peak_and_drawdown(seed: int) -> None:
    rng = random.Random(seed)
    max_points = rng.choice([10, 11, 13, 64])
    events_per_time = rng.choice([1, 1, 2, 3])  # several instruments at each time
    curve, plain = EquityCurve(max_points), PlainCurve(max_points)
    equity = Decimal(1000)
    for i in range(rng.randrange(1, 2000)):
        if rng.random() < 0.4:  # equity often stays the same from one event to the next
            equity += Decimal(rng.randrange(-50, 51)) / 10
        ts = T0 + timedelta(seconds=i // events_per_time)
        curve.add(ts, equity)
        plain.add(ts, equity)
    points, peak, max_drawdown = plain.finish()
    assert curve.points == points
    assert curve.series() == [*points, (ts, equity)]
    assert curve.peak == peak
    assert curve.max_drawdown == max_drawdown
    assert curve.last == (ts, equity)


def test_a_fall_within_one_time_is_no_drawdown() -> None:
    # Long A and B: A's bar of the day comes first (down 10), then B's (up 10). Between the
    # two the books priced A today and B yesterday: not a state that existed.
    curve = EquityCurve()
    day = timedelta(days=1)
    for ts, equity in [(T0, "100000"), (T0 + day, "99000"), (T0 + day, "100000")]:
        curve.add(ts, Decimal(equity))
    assert curve.max_drawdown == 0
    assert curve.series() == [(T0, Decimal(100000)), (T0 + day, Decimal(100000))]
    curve.add(T0 + 2 * day, Decimal(99500))  # a real fall, seen before the next time comes
    assert curve.max_drawdown == Decimal("0.005")
    assert curve.peak == Decimal(100000)


def _fill(
    pid: str,
    instrument: str,
    side: Side,
    quantity: str,
    price: Decimal,
    commission: Decimal = Decimal("0.5"),
) -> Fill:
    return Fill(
        event_id=uuid6.uuid7(),
        ts=T0,
        order_id=uuid6.uuid7(),
        signal_id=uuid6.uuid7(),
        strategy_id=pid,
        instrument=instrument,
        side=side,
        quantity=Decimal(quantity),
        price=price,
        commission=commission,
    )


def _portfolio_stage(book: PortfolioBook, result: RunResult) -> PortfolioStage:
    services = StageServices(
        transport=MemoryTransport(),
        ids=Uuid7Generator(),
        clock=SimulatedClock(),
        status=PipelineStatus(),
        logger=logging.getLogger("test"),
    )
    return PortfolioStage(services, book, MemoryPersistence(), result, snapshot_interval_seconds=60)


def test_portfolio_stage_equity_equals_the_books_equity_after_every_event() -> None:
    """The stage recomputes equity only after a fill or a price move of a held instrument."""
    result = RunResult()
    book = PortfolioBook(Decimal(10_000))
    stage = _portfolio_stage(book, result)
    rng = random.Random(3)
    prices = {"A": Decimal(100), "B": Decimal(50), "C": Decimal(20)}
    for i in range(3000):
        instrument = rng.choice("ABC")
        prices[instrument] += Decimal(rng.choice([-1, 1])) / 100
        stage.on_market(
            MarketTick(
                event_id=uuid6.uuid7(),
                ts=T0 + timedelta(seconds=i),
                instrument=instrument,
                last_price=prices[instrument],
            )
        )
        assert result.equity_curve.last == (T0 + timedelta(seconds=i), book.equity())
        if rng.random() < 0.05:  # A and B are traded by two portfolios; C never is
            traded = rng.choice("AB")
            pid = rng.choice(["p1", "p2"])
            held = book.portfolio(pid).position(traded)
            side = Side.SELL if held > 0 and rng.random() < 0.6 else Side.BUY
            quantity = str(held) if side is Side.SELL else str(rng.randrange(1, 4))
            stage.on_fill(_fill(pid, traded, side, quantity, prices[traded]))
    assert book.portfolio("p1").fills_applied + book.portfolio("p2").fills_applied > 100
    held = {i for p in book.portfolios.values() for i, h in p.holdings.items() if h.quantity}
    assert held <= {"A", "B"}


def _plain_crossings(prices: list[Decimal], fast: int, slow: int) -> list[int]:
    """+1/-1 where the sign of SMA(fast) - SMA(slow) changed from the last non-zero one."""
    out, last = [], 0
    for i in range(len(prices)):
        if i + 1 < slow:
            out.append(0)
            continue
        difference = (
            sum(prices[i + 1 - fast : i + 1]) / fast - sum(prices[i + 1 - slow : i + 1]) / slow
        )
        sign = (difference > 0) - (difference < 0)
        out.append(sign if sign and last and sign != last else 0)
        last = sign or last
    return out


@pytest.mark.parametrize("seed", range(20))
def test_sma_crossing_matches_the_plain_moving_averages(seed: int) -> None:
    from tradeloom_strategies.sma_cross import _Crossing

    rng = random.Random(seed)
    fast = rng.randrange(1, 6)
    slow = rng.randrange(fast + 1, 12)
    price, prices = Decimal(100), []
    for _ in range(600):
        # Mostly cent steps and flat stretches, so the averages are often exactly equal.
        price += Decimal(rng.choice([-1, 0, 0, 1])) / 100
        prices.append(price)
    crossing = _Crossing(fast, slow)
    got = [crossing.update(p) for p in prices]
    assert got == _plain_crossings(prices, fast, slow)
    assert any(got)


def test_run_result_repr_counts_instead_of_listing_every_fill() -> None:
    """asyncio builds the repr of a finished run's result; it must not list every fill."""
    from tradeloom.testing import run_strategy, ticks
    from tradeloom_strategies.sma_cross import SmaCross

    prices = [Decimal(100) + Decimal(i % 7 - (i // 7) % 2 * 3) / 100 for i in range(400)]
    result = run_strategy(SmaCross(2, 5, Decimal(1)), ticks("X", prices))
    assert result.trade_count > 20
    text = repr(result)
    assert f"fills={result.trade_count}" in text
    assert "Fill(" not in text and len(text) < 200


def _plain_portfolio(book: PortfolioBook, pid: str) -> Decimal:
    """A portfolio's equity the obvious way: cash plus every non-zero holding at its mark,
    else its last fill price, else its average price."""
    portfolio = book.portfolios[pid]
    value = portfolio.cash
    for instrument, holding in portfolio.holdings.items():
        if holding.quantity:
            mark = book.marks.get(instrument, holding.last_price)
            value += holding.quantity * (mark if mark is not None else holding.average_price)
    return value


@pytest.mark.parametrize("seed", range(10))
def test_equity_from_terms_is_the_plain_sum_digit_for_digit(seed: int) -> None:
    rng = random.Random(seed)
    book = PortfolioBook(Decimal("1E+4"))
    for pid in ("p1", "p2", "p3"):
        portfolio = book.portfolio(pid)
        portfolio.cash = Decimal(rng.choice(["10000", "9999.5", "1.2E+4", "0.001"]))
        for instrument in "ABCD":
            quantity = Decimal(rng.choice(["0", "1", "-2", "0.25", "1E+1"]))
            last = rng.choice([None, Decimal("10.10"), Decimal("9.9")])
            portfolio.holdings[instrument] = Holding(quantity, Decimal("10.005"), ZERO, last)
    for instrument in rng.sample("ABCD", 2):  # some instruments have no price yet
        book.marks[instrument] = Decimal(rng.choice(["10", "10.25", "1.1E+1"]))
    plain = Decimal(0)
    for pid, portfolio in book.portfolios.items():
        value = _plain_portfolio(book, pid)
        assert str(portfolio.equity(book.marks)) == str(value)  # same value, same exponent
        plain += value
    assert str(book.equity()) == str(plain)


# Prices, quantities and cash with positive exponents too: 0 + 9E+3 is 9000, not 9E+3.
@pytest.mark.parametrize("cash", ["1E+4", "10000", "0.00", "-2.5E+2"])
def test_one_portfolio_holding_one_instrument_gets_the_books_equity_digit_for_digit(
    cash: str,
) -> None:
    """The stage's shortcut for a single holding: the same value and the same exponent."""
    result = RunResult()
    book = PortfolioBook(Decimal(cash))
    stage = _portfolio_stage(book, result)
    rng = random.Random(cash)
    spellings = ["1E+2", "2E+2", "1.5E+2", "150", "149.99", "3E+1"]
    shortcut_used = 0
    for i in range(2000):
        instrument = rng.choice("AAC")
        price = Decimal(rng.choice(spellings))
        tick = MarketTick(
            event_id=uuid6.uuid7(),
            ts=T0 + timedelta(seconds=i),
            instrument=instrument,
            last_price=price,
        )
        stage.on_market(tick)
        shortcut_used += stage._only_holding is not None and instrument == "A"
        recorded = result.equity_curve.last
        assert recorded is not None
        assert recorded[1].as_tuple() == book.equity().as_tuple()
        if rng.random() < 0.05:  # only p1 trades, only A
            held = book.portfolio("p1").position("A")
            side = Side.SELL if held > 0 and rng.random() < 0.5 else Side.BUY
            quantity = str(held) if side is Side.SELL else rng.choice(["1", "1E+1", "2.50"])
            commission = Decimal(rng.choice(["0E+1", "0", "0.5"]))
            fill_price = Decimal(rng.choice(spellings))
            stage.on_fill(_fill("p1", "A", side, quantity, fill_price, commission))
    assert shortcut_used > 500
