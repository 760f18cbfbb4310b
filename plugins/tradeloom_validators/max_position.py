"""``max_position``: caps the absolute position per strategy and instrument."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from tradeloom.components import RiskView, Validator
from tradeloom.events import Side, Signal
from tradeloom_validators.params import DecimalParam, per_instrument, positive_decimal


class MaxPosition(Validator):
    """Rejects a signal when the absolute position after it could exceed a limit.

    The position counts fills and orders sent but not yet filled, per strategy and
    instrument, on the side the signal moves it: a buy is judged on the highest the position
    may come to, with open limit sells left out (they may never fill), a sell on the lowest
    (``RiskView.position_range``). ``limits`` overrides ``limit`` for single instruments. An
    order that only shrinks an existing position (without crossing zero) always passes, so a
    strategy that is over a lowered limit can still trade its way back under it.
    """

    needs_price = False

    def __init__(
        self, limit: DecimalParam, limits: Mapping[str, DecimalParam] | None = None
    ) -> None:
        self.limit = positive_decimal(limit, where="max_position: limit")
        self.limits = per_instrument(limits, where="max_position: limits")

    def limit_for(self, instrument: str) -> Decimal:
        """The limit that applies to ``instrument``."""
        return self.limits.get(instrument, self.limit)

    def validate(self, signal: Signal, view: RiskView) -> str | None:
        range_of = getattr(view, "position_range", None)  # position_range(), inline
        if range_of is None:
            lowest = highest = view.position(signal.strategy_id, signal.instrument)
        else:
            lowest, highest = range_of(signal.strategy_id, signal.instrument)
        if signal.side is Side.BUY:
            current, after, left_out = highest, highest + signal.quantity, "sells"
        else:
            current, after, left_out = lowest, lowest - signal.quantity, "buys"
        limit = self.limit_for(signal.instrument)
        if abs(after) <= limit:
            return None
        if abs(after) < abs(current) and (after >= 0) == (current >= 0):
            return None  # reduces exposure on the same side
        return (
            f"position after order {after} would exceed limit {limit} for {signal.instrument} "
            f"(strategy {signal.strategy_id}: position {current} including open orders but "
            f"not open limit {left_out}, {signal.side.value} {signal.quantity})"
        )

    def __repr__(self) -> str:
        return f"MaxPosition(limit={self.limit}, limits={self.limits})"
