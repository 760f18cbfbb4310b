"""The stock ``paper`` executor: simulated fills at market prices."""
