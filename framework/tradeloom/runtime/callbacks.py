"""Components' callbacks are called synchronously: refuse ones that would never run."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from tradeloom.errors import ConfigError

STRATEGY_CALLBACKS = ("on_start", "on_tick", "on_bar", "on_fill", "on_rejection", "on_stop")


def refuse_async_callbacks(label: str, component: Any, names: Iterable[str]) -> None:
    """Raise ConfigError when a callback ``names`` of ``component`` is an ``async def`` or a
    generator function: called like a plain function, it returns a coroutine or a generator
    and runs none of its code (a strategy that never trades, with no error)."""
    for name in names:
        method = getattr(component, name, None)
        if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
            kind = "an async function"
        elif inspect.isgeneratorfunction(method):
            kind = "a generator function (it has a yield)"
        else:
            continue
        raise ConfigError(
            f"{label}: {name} is {kind}, which the pipeline would call without running it; "
            "callbacks are plain functions (do slow work outside them, or in a thread)"
        )
