"""An example validator: refuses a buy that would spend more than a share of the strategy's
cash. Replace the rule with your own pre-trade check."""

from __future__ import annotations

from decimal import Decimal

from tradeloom import Side, Signal
from tradeloom.components import RiskView, Validator


class {{ cookiecutter.class_name }}(Validator):
    """Refuses a buy whose cost (quantity times its limit price, or the latest price for a
    market order) is more than ``share`` of the strategy's cash. Sells always pass.

    ``validate`` returns ``None`` to let the signal trade, or the reason to refuse it: the
    strategy hears it in ``on_rejection``, and the results count it under this validator's
    name. A reason is a normal outcome; an exception is a bug and stops the run.
    """

    needs_price = True  # a market order is valued at the latest price: wait for one

    def __init__(self, share: Decimal = Decimal("0.25")) -> None:
        if not Decimal(0) < share <= 1:
            raise ValueError(f"share must be more than 0 and at most 1, got {share}")
        self.share = share

    def validate(self, signal: Signal, view: RiskView) -> str | None:
        if signal.side is not Side.BUY:
            return None
        price = signal.limit_price or view.last_price(signal.instrument)
        if price is None:  # cannot happen with needs_price = True; say so if it does
            return f"no price for {signal.instrument} to value the buy at"
        cost = signal.quantity * price
        budget = view.cash(signal.strategy_id) * self.share
        if cost > budget:
            return f"a buy of {cost} is more than {self.share} of the cash ({budget})"
        return None
