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


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one real error inside (possibly nested) task-group exception groups, or None when
    there are several."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    return leaves[0] if len(leaves) == 1 else None
