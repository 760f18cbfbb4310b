"""Registers the stock ``sqlite`` persistence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_sqlite.persistence import SqlitePersistence


@hookimpl
def tradeloom_register_persistence() -> Mapping[str, Any]:
    return {"sqlite": SqlitePersistence}
