"""Deterministic synthetic market data for the benchmarks, written as CSV files.

Ticks: a random walk in 1-cent steps around 100.00 (reflected at 90.00 and 110.00), one tick
per second. Bars: one-minute bars whose open is one step from the previous close and whose
close is four more steps on; high and low span that path. Both are generated from a seeded
``random.Random`` so every run (and every engine) sees the same numbers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

START = datetime(2024, 1, 2)
CENTER, LOW, HIGH = 10_000, 9_000, 11_000  # in cents
INSTRUMENT = "SYN"

TICK_HEADER = "ts,price"
BAR_HEADER = "ts,open,high,low,close,volume"
STEPS_PER_BAR = 4


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def _walk(seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    price = CENTER
    draw = rng.random
    while True:
        price += 1 if draw() < 0.5 else -1
        if price < LOW:
            price = LOW + 2
        elif price > HIGH:
            price = HIGH - 2
        yield price


def _stamps(step: timedelta) -> Iterator[str]:
    # Formatting a datetime per row is slow; only the clock part changes within a day.
    day = START
    while True:
        stamp = day
        end = day + timedelta(days=1)
        date = day.strftime("%Y-%m-%d")
        while stamp < end:
            yield f"{date} {stamp:%H:%M:%S}"
            stamp += step
        day = end


def write_ticks(path: Path, count: int, seed: int = 7) -> Path:
    """Write ``count`` ticks (``ts,price``) to ``path``."""
    walk = _walk(seed)
    stamps = _stamps(timedelta(seconds=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        out.write(TICK_HEADER + "\n")
        lines = []
        for _ in range(count):
            lines.append(f"{next(stamps)},{_cents(next(walk))}\n")
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return path


def write_bars(path: Path, count: int, seed: int = 11) -> Path:
    """Write ``count`` one-minute bars (``ts,open,high,low,close,volume``; ``ts`` is the bar's
    start) to ``path``."""
    walk = _walk(seed)
    stamps = _stamps(timedelta(minutes=1))
    rng = random.Random(seed + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        out.write(BAR_HEADER + "\n")
        lines = []
        for _ in range(count):
            path_prices = [next(walk) for _ in range(STEPS_PER_BAR + 1)]
            open_, close = path_prices[0], path_prices[-1]
            volume = rng.randrange(100, 10_000)
            lines.append(
                f"{next(stamps)},{_cents(open_)},{_cents(max(path_prices))},"
                f"{_cents(min(path_prices))},{_cents(close)},{volume}\n"
            )
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return path


def ensure(path: Path, kind: str, count: int) -> Path:
    """Generate the file unless one with the same name (which encodes kind, count and seed)
    already exists."""
    if path.is_file() and path.stat().st_size > 0:
        return path
    tmp = path.with_suffix(".tmp")
    (write_ticks if kind == "tick" else write_bars)(tmp, count)
    tmp.replace(path)
    return path
