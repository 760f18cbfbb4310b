"""Parquet files replay like CSV ones when pyarrow is installed."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tradeloom_replay import ReplayFeed

D = Decimal


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ticks.parquet"
    path.write_bytes(b"PAR1")
    # Make "import pyarrow.parquet" fail as it does where pyarrow is not installed.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match="pip install pyarrow"):
        ReplayFeed(path=path, instrument="X", columns={"ts": "ts", "last_price": "px"})


def test_parquet_ticks(tmp_path, context) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "ts": pa.array(
                [
                    datetime(2024, 1, 1, 9, 30, tzinfo=UTC),
                    datetime(2024, 1, 1, 9, 31, tzinfo=UTC),
                    datetime(2024, 1, 1, 9, 32, tzinfo=UTC),
                    datetime(2024, 1, 1, 9, 33, tzinfo=UTC),
                ],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "px": pa.array([D("101.25"), D("-1.00"), D("101.50"), None], type=pa.decimal128(10, 2)),
            "qty": pa.array([10, 5, 0, 1], type=pa.int64()),
            "venue": pa.array(["X", "X", "Y", "Y"]),
        }
    )
    path = tmp_path / "ticks.parquet"
    pq.write_table(table, path, row_group_size=2)

    feed = ReplayFeed(
        path=path,
        instrument="ACME",
        columns={"ts": "ts", "last_price": "px", "volume": "qty"},
        timezone="Asia/Tokyo",  # the column is UTC-typed, so this does not apply
    )
    ticks = list(feed.events(context.feed))
    assert [(t.ts, t.last_price, t.volume) for t in ticks] == [
        (datetime(2024, 1, 1, 9, 30, tzinfo=UTC), D("101.25"), D("10")),
        (datetime(2024, 1, 1, 9, 32, tzinfo=UTC), D("101.50"), D("0")),
    ]
    assert str(ticks[0].last_price) == "101.25"
    assert feed.rows_read == 4 and feed.bad_rows == 2
    negative, empty = context.dead_letters
    assert (negative.location, empty.location) == ("row 2", "row 4")
    assert "must be greater than zero" in negative.reason
    assert "column 'px' is empty" in empty.reason
    assert b'"px": "-1.00"' in negative.raw
    assert negative.source == str(path)


def test_parquet_bars_with_string_columns_and_naive_dates(tmp_path, context) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "Date": ["2024-01-02", "2024-01-03"],
            "Open": ["10", "11"],
            "High": ["12", "12"],
            "Low": ["9", "10"],
            "Close": ["11", "11.5"],
            "Adj Close": ["11", "11.5"],
            "Volume": [100, 200],
        }
    )
    path = tmp_path / "daily.parquet"
    pq.write_table(table, path)
    feed = ReplayFeed(path=path, format="yahoo", instrument="X", timezone="America/New_York")
    bars = list(feed.events(context.feed))
    assert [b.start for b in bars] == [
        datetime(2024, 1, 2, 5, tzinfo=UTC),
        datetime(2024, 1, 3, 5, tzinfo=UTC),
    ]
    assert bars[1].close == D("11.5")
    assert context.dead_letters == []
