"""price_column = "adj_close": prices scaled by Adj Close / Close keep the bar's shape, also
when rounding to 28 digits would put a high or a low on the wrong side of the exact close."""

from __future__ import annotations

import random
import struct
from datetime import date, timedelta
from decimal import Decimal

from tradeloom.testing.feeds import collect_events
from tradeloom_replay import ReplayFeed

D = Decimal
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def adjusted(path) -> ReplayFeed:
    return ReplayFeed(path=path, format="yahoo", instrument="AAPL", price_column="adj_close")


def test_a_close_at_the_high_or_the_low_stays_inside_the_adjusted_bar(write) -> None:
    # yfinance writes prices as float reprs: 16-17 significant digits.
    path = write(
        "aapl.csv",
        YAHOO_HEADER
        # closes at its high
        + "2020-01-08,72.70446014404297,74.1829605102539,71.22595977783203,"
        "74.1829605102539,71.95747375488281,1000\n"
        # closes at its low
         + "2020-01-09,53.638404846191406,53.784034729003906,53.49277114868164,"
        "53.49277114868164,51.88798904418945,1000\n"
        # opens at its close
         + "2020-01-10,60.77779769897461,61.0,59.036319732666016,"
        "60.77779769897461,58.954463958740234,1000\n",
    )
    run = collect_events(adjusted(path))
    assert run.dead_letters == []
    high_close, low_close, open_close = run.events
    assert high_close.close == high_close.high == D("71.95747375488281")
    assert low_close.close == low_close.low == D("51.88798904418945")
    assert open_close.close == open_close.open == D("58.954463958740234")
    for bar in run.events:
        assert bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high


def f32(value: float) -> str:
    """A price as yfinance writes it: a float32 value printed as a float64 repr."""
    return repr(struct.unpack("f", struct.pack("f", value))[0])


def test_every_valid_bar_of_a_yfinance_style_file_is_replayed_adjusted(write) -> None:
    rnd = random.Random(7)
    lines = []
    day = date(2020, 1, 1)
    for i in range(300):
        day += timedelta(days=1)
        low = rnd.uniform(50, 100)
        high = low * rnd.uniform(1.001, 1.05)
        close = (f32(high), f32(low), f32((high + low) / 2))[i % 3]
        adj = f32(float(close) * rnd.uniform(0.5, 0.99))
        lines.append(f"{day},{f32((high + low) / 2)},{f32(high)},{f32(low)},{close},{adj},1000")
    path = write("yf.csv", YAHOO_HEADER + "\n".join(lines) + "\n")
    run = collect_events(adjusted(path))
    assert run.dead_letters == []
    assert len(run.events) == 300
    for line, bar in zip(lines, run.events, strict=True):
        _, _, high, low, close, adj, _ = line.split(",")
        assert bar.close == D(adj)
        assert bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high
        if high == close:
            assert bar.high == D(adj)
        if low == close:
            assert bar.low == D(adj)


def test_a_bar_whose_file_prices_are_out_of_shape_is_still_bad(write) -> None:
    path = write("bad.csv", YAHOO_HEADER + "2020-01-02,10,11,9,12,6,100\n")
    run = collect_events(adjusted(path))
    assert run.events == []
    (letter,) = run.dead_letters
    assert letter.reason == "close 12 is outside low..high 9..11"
