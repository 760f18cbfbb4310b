"""``price_band``: keeps limit prices near the market."""

from __future__ import annotations

from decimal import Decimal

from tradeloom.components import RiskView, Validator
from tradeloom.events import OrderType, Signal
from tradeloom_validators.params import DecimalParam, positive_decimal

_BPS = Decimal(10_000)


class PriceBand(Validator):
    """Rejects a limit order whose limit price is more than ``max_deviation_bps`` basis points
    away from the last price (either side). Market orders pass."""

    needs_price = True

    def __init__(self, max_deviation_bps: DecimalParam) -> None:
        self.max_deviation_bps = positive_decimal(
            max_deviation_bps, where="price_band: max_deviation_bps"
        )

    def validate(self, signal: Signal, view: RiskView) -> str | None:
        if signal.order_type is not OrderType.LIMIT or signal.limit_price is None:
            return None
        limit_price = signal.limit_price
        last = view.last_price(signal.instrument)
        if last is None or last <= 0:
            return (
                f"no last price for {signal.instrument} to compare the limit price "
                f"{limit_price} with"
            )
        distance = abs(limit_price - last)
        # Compared without dividing, so the check itself never rounds.
        if distance * _BPS <= self.max_deviation_bps * last:
            return None
        deviation = distance * _BPS / last
        return (
            f"limit price {limit_price} is {deviation:.2f} bps from last price {last} for "
            f"{signal.instrument}, more than the allowed {self.max_deviation_bps} bps"
        )

    def __repr__(self) -> str:
        return f"PriceBand(max_deviation_bps={self.max_deviation_bps})"
