"""Calling plugin code that may be synchronous or asynchronous ("await me maybe")."""

from __future__ import annotations

import inspect
from typing import Any


async def maybe_await(value: Any) -> Any:
    """Await ``value`` if it is awaitable, else return it as it is."""
    if inspect.isawaitable(value):
        return await value
    return value


async def call_hook_and_await(hook_caller: Any, **kwargs: Any) -> list[Any]:
    """Call a pluggy hook (synchronous) and await every awaitable it returned."""
    if not hook_caller.get_hookimpls():
        return []
    results = hook_caller(**kwargs)
    return [await maybe_await(result) for result in results]
