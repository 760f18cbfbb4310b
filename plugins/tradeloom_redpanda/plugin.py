"""Registers the ``redpanda`` transport and the ``redpanda`` feed.

Both are registered even without the ``redpanda`` extra, so ``tradeloom plugins`` lists them;
aiokafka is imported only when one is built, and a missing aiokafka is then a clear error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom.errors import PluginError


def _built_on_demand(module: str, name: str) -> Callable[..., Any]:
    def factory(**params: Any) -> Any:
        try:
            component = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            if exc.name != "aiokafka":
                raise
            raise PluginError(
                "the redpanda plugin needs aiokafka: pip install 'tradeloom[redpanda]'"
            ) from None
        return component(**params)

    factory.__name__ = name
    factory.__doc__ = f"Builds {module}.{name} (imports aiokafka when called)."
    return factory


@hookimpl
def tradeloom_register_transports() -> Mapping[str, Any]:
    return {"redpanda": _built_on_demand("tradeloom_redpanda.transport", "RedpandaTransport")}


@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    return {"redpanda": _built_on_demand("tradeloom_redpanda.feed", "RedpandaFeed")}
