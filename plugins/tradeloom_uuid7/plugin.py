"""Registers the stock ``uuid7`` id generator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_uuid7.generator import Uuid7Generator


@hookimpl
def tradeloom_register_id_generators() -> Mapping[str, Any]:
    return {"uuid7": Uuid7Generator}
