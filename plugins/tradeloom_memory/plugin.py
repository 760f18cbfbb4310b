"""Registers the in-process transport and persistence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_memory.transport import MemoryTransport


@hookimpl
def tradeloom_register_transports() -> Mapping[str, Any]:
    return {"memory": MemoryTransport}


@hookimpl
def tradeloom_register_persistence() -> Mapping[str, Any]:
    from tradeloom_memory.persistence import MemoryPersistence

    return {"memory": MemoryPersistence}
