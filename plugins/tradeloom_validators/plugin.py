"""Registers the stock pre-trade validators."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_validators.max_order_notional import MaxOrderNotional
from tradeloom_validators.max_position import MaxPosition
from tradeloom_validators.no_short import NoShort
from tradeloom_validators.price_band import PriceBand


@hookimpl
def tradeloom_register_validators() -> Mapping[str, Any]:
    return {
        "max_position": MaxPosition,
        "max_order_notional": MaxOrderNotional,
        "price_band": PriceBand,
        "no_short": NoShort,
    }
