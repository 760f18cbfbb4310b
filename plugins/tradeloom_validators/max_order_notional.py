"""``max_order_notional``: caps the value of a single order."""

from __future__ import annotations

from tradeloom.components import RiskView, Validator
from tradeloom.events import OrderType, Signal
from tradeloom_validators.params import DecimalParam, positive_decimal


class MaxOrderNotional(Validator):
    """Rejects a signal whose quantity times price exceeds ``limit``.

    The price is the limit price of a limit order, else the instrument's last price.
    """

    needs_price = True

    def __init__(self, limit: DecimalParam) -> None:
        self.limit = positive_decimal(limit, where="max_order_notional: limit")

    def validate(self, signal: Signal, view: RiskView) -> str | None:
        if signal.order_type is OrderType.LIMIT and signal.limit_price is not None:
            price, source = signal.limit_price, "limit price"
        else:
            last = view.last_price(signal.instrument)
            if last is None:
                return f"no price known for {signal.instrument} to value the order"
            price, source = last, "last price"
        notional = signal.quantity * price
        if notional <= self.limit:
            return None
        return (
            f"order notional {notional} ({signal.quantity} x {source} {price}) would exceed "
            f"limit {self.limit} for {signal.instrument}"
        )

    def __repr__(self) -> str:
        return f"MaxOrderNotional(limit={self.limit})"
