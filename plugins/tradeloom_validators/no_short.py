"""``no_short``: a strategy may not sell what it does not hold."""

from __future__ import annotations

from tradeloom.components import RiskView, Validator
from tradeloom.events import Side, Signal


class NoShort(Validator):
    """Rejects a sell that would take the position (fills plus open orders) below zero."""

    needs_price = False

    def validate(self, signal: Signal, view: RiskView) -> str | None:
        if signal.side is not Side.SELL:
            return None
        current = view.position(signal.strategy_id, signal.instrument)
        after = current - signal.quantity
        if after >= 0:
            return None
        return (
            f"position after order {after} would go below zero for {signal.instrument} "
            f"(short selling is not allowed; strategy {signal.strategy_id} holds {current} "
            f"including open orders, sell {signal.quantity})"
        )

    def __repr__(self) -> str:
        return "NoShort()"
