"""Registers the ``redpanda`` transport and the ``redpanda`` feed.

Both are registered by reference even without the ``redpanda`` extra, so ``tradeloom plugins``
lists them; aiokafka is imported only when one is built (:mod:`tradeloom_redpanda.factories`),
and a missing aiokafka is then a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl


@hookimpl
def tradeloom_register_transports() -> Mapping[str, Any]:
    return {"redpanda": "tradeloom_redpanda.factories:RedpandaTransport"}


@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    return {"redpanda": "tradeloom_redpanda.factories:RedpandaFeed"}
