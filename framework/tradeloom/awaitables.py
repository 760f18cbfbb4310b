"""Calling plugin code that may be synchronous or asynchronous ("await me maybe")."""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from tradeloom.errors import PluginError


async def maybe_await(value: Any) -> Any:
    """Await ``value`` if it is awaitable, else return it as it is."""
    if inspect.isawaitable(value):
        return await value
    return value


async def call_hook_and_await(
    hook_caller: Any, *, report: Callable[[PluginError], None] | None = None, **kwargs: Any
) -> list[Any]:
    """Call a pluggy hook (synchronous) and await every awaitable it returned.

    The implementations are called one at a time, in pluggy's order, so that one that raises
    (or whose awaitable raises) is named: a :class:`~tradeloom.errors.PluginError` saying
    which plugin failed in which hook, with the plugin's exception as its cause. It is raised,
    or, given ``report``, handed to it while the other implementations still run (a hook that
    releases resources: each plugin must get its call). Hooks with wrappers are called by
    pluggy itself, in one go.
    """
    impls = hook_caller.get_hookimpls()
    if not impls:
        return []
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        calls: list[Callable[[], Any]] = [lambda: hook_caller(**kwargs)]
        together = True
    else:
        calls = [
            functools.partial(impl.function, *(kwargs[arg] for arg in impl.argnames))
            for impl in reversed(impls)  # pluggy calls the last registered first
        ]
        together = False
    results: list[Any] = []
    for call in calls:
        try:
            returned = call()
            found = (
                [await maybe_await(item) for item in returned]
                if together
                else [await maybe_await(returned)]
            )
        except Exception as exc:
            failure = plugin_failure(hook_caller, exc)
            failure.__cause__ = exc
            if report is None:
                raise failure from exc
            report(failure)
            continue
        results.extend(item for item in found if item is not None)
    return results


def exception_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, in order; ``[exc]`` for one
    that is no group."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    return leaves


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one real error inside (possibly nested) task-group exception groups, or None when
    there are several."""
    leaves = exception_leaves(group)
    return leaves[0] if len(leaves) == 1 else None


def plugin_failure(hook_caller: Any, exc: Exception) -> PluginError:
    """A :class:`~tradeloom.errors.PluginError` for ``exc``, raised by one of the hook's
    implementations: named after the plugin whose function is in the traceback."""
    codes = {
        getattr(impl.function, "__code__", None): impl.plugin_name
        for impl in hook_caller.get_hookimpls()
    }
    frames = traceback.walk_tb(exc.__traceback__)
    names = [codes[frame.f_code] for frame, _ in frames if frame.f_code in codes]
    who = f"plugin {names[-1]!r}" if names else "a plugin"
    return PluginError(f"{who} failed in {hook_caller.name}: {type(exc).__name__}: {exc}")
