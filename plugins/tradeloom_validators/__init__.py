"""Stock pre-trade validators: ``max_position``, ``max_order_notional``, ``price_band`` and
``no_short``.

Registered through the ``tradeloom`` entry point ``validators`` (module
:mod:`tradeloom_validators.plugin`). See ``docs/validators.md``.
"""

from tradeloom_validators.max_order_notional import MaxOrderNotional
from tradeloom_validators.max_position import MaxPosition
from tradeloom_validators.no_short import NoShort
from tradeloom_validators.price_band import PriceBand

__all__ = ["MaxOrderNotional", "MaxPosition", "NoShort", "PriceBand"]
