"""What the resume tests share: a backtest of the ORCL daily bars with sqlite state."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def orcl_config(data: Path, state: Path) -> dict[str, Any]:
    """sma_cross on the ORCL bars of ``data``, paper trader at the next open with 10 bps,
    state in the sqlite file ``state``."""
    return {
        "feed": {
            "name": "replay",
            "params": {"path": str(data), "format": "yahoo", "instrument": "ORCL"},
        },
        "strategies": [{"name": "sma_cross", "params": {"quantity": "10"}}],
        "executor": {"name": "paper", "params": {"fill_at": "next", "commission_bps": "10"}},
        "persistence": {"name": "sqlite", "params": {"path": str(state)}},
    }
