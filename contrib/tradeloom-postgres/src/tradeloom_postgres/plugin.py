"""Registers the ``postgres`` persistence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl


@hookimpl
def tradeloom_register_persistence() -> Mapping[str, Any]:
    return {"postgres": "tradeloom_postgres.persistence:PostgresPersistence"}
