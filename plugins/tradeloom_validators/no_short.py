"""``no_short``: a strategy may not sell what it does not hold."""

from __future__ import annotations

from tradeloom.components import RiskView, Validator
from tradeloom.events import Side, Signal


class NoShort(Validator):
    """Rejects a sell that could take the position below zero: counted are the fills, the
    orders in flight and open sells, not open limit buys, which may never fill
    (``RiskView.position_range``)."""

    needs_price = False

    def validate(self, signal: Signal, view: RiskView) -> str | None:
        if signal.side is not Side.SELL:
            return None
        range_of = getattr(view, "position_range", None)  # position_range(), inline
        if range_of is None:
            lowest = view.position(signal.strategy_id, signal.instrument)
        else:
            lowest, _ = range_of(signal.strategy_id, signal.instrument)
        after = lowest - signal.quantity
        if after >= 0:
            return None
        return (
            f"position after order {after} would go below zero for {signal.instrument} "
            f"(short selling is not allowed; strategy {signal.strategy_id} holds {lowest} "
            f"including open orders but not open limit buys, sell {signal.quantity})"
        )

    def __repr__(self) -> str:
        return "NoShort()"
