"""Bundled sample data for `tradeloom demo`: ORCL daily OHLCV 1995-2014.

From the sample data of the backtrader project; market prices are facts.
"""
