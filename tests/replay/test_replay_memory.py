"""The feed streams: replaying a large file holds a few rows in memory, never the whole file."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path

from tradeloom_replay import ReplayFeed

ROWS = 200_000


def write_ticks(path: Path, rows: int, line_break: str = "\n") -> None:
    start = datetime(2024, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(f"Datetime,Open,High,Low,Close,Volume,OpenInterest{line_break}")
        for i in range(rows):
            stamp = (start + timedelta(milliseconds=250 * i)).isoformat(timespec="milliseconds")
            price = f"{3000 + (i % 400) / 4:.2f}"
            handle.write(f"{stamp},{price},{price},{price},{price},{i % 50},0{line_break}")


def test_replaying_200k_rows_runs_in_bounded_memory(tmp_path, context) -> None:
    path = tmp_path / "big.csv"
    write_ticks(path, ROWS)
    feed = ReplayFeed(path=path, format="ticks", instrument="FUT")

    # What keeping events costs: measured on a sample, scaled to the file.
    tracemalloc.start()
    try:
        sample = list(islice(feed.events(context.feed), 2_000))
        per_event = tracemalloc.get_traced_memory()[0] / len(sample)
        del sample
        materialised = per_event * ROWS

        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        count = 0
        last = None
        for event in feed.events(context.feed):
            count += 1
            last = event
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert count == feed.rows_read == ROWS
    assert last is not None and last.ts.year == 2024
    assert materialised > 50_000_000  # keeping 200k events would take tens of megabytes
    assert peak < 2_000_000, f"streaming peak {peak} bytes"
    assert peak < materialised / 50


def test_a_file_with_carriage_returns_only_streams_too(tmp_path, context) -> None:
    # Old Mac line breaks: no line feed in any chunk of the file.
    path = tmp_path / "mac.csv"
    write_ticks(path, ROWS // 2, line_break="\r")
    size = path.stat().st_size
    feed = ReplayFeed(path=path, format="ticks", instrument="FUT")
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        count = sum(1 for _ in feed.events(context.feed))
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert count == feed.rows_read == ROWS // 2 and feed.bad_rows == 0
    assert size > 4_000_000
    # Read by the csv module, a block of rows (as lists) at a time: a little more than the
    # fast path, nothing like the file.
    assert peak < 3_000_000, f"streaming peak {peak} bytes"
