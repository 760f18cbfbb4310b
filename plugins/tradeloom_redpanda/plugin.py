"""Registers the ``redpanda`` transport and the ``redpanda`` feed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl


@hookimpl
def tradeloom_register_transports() -> Mapping[str, Any]:
    from tradeloom_redpanda.transport import RedpandaTransport

    return {"redpanda": RedpandaTransport}


@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    from tradeloom_redpanda.feed import RedpandaFeed

    return {"redpanda": RedpandaFeed}
