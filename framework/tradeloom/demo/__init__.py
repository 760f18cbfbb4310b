"""Bundled sample data for `tradeloom demo`: ORCL daily OHLCV 1995-2014 (from backtrader's sample data)."""
