"""Registers the paper trader."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_paper.trader import PaperTrader


@hookimpl
def tradeloom_register_executors() -> Mapping[str, Any]:
    return {"paper": PaperTrader}
