"""Registers the ``postgres`` persistence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl

from tradeloom_postgres.persistence import PostgresPersistence


@hookimpl
def tradeloom_register_persistence() -> Mapping[str, Any]:
    return {"postgres": PostgresPersistence}
