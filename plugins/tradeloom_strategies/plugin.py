"""Registers the stock example strategies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_strategies.sma_cross import SmaCross


@hookimpl
def tradeloom_register_strategies() -> Mapping[str, Any]:
    return {"sma_cross": SmaCross}
