"""What code passes to a pipeline, checked before anything is built: a wrong type gets a
``TypeError`` that says what was expected, not an ``AttributeError`` from deep inside."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tradeloom.strategy import Strategy


def check_pipeline_arguments(
    *,
    roles: Any,
    strategies: Any,
    events: Any,
    feed: Any,
    plugins: Any,
    progress: Any,
    resume: Any,
    replay_from_start: Any = False,
) -> None:
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise TypeError(f"roles must be a list of role names, like ['all'], not {roles!r}")
    if strategies is not None:
        if not isinstance(strategies, Mapping):
            raise TypeError(
                "strategies must be a mapping of strategy id to Strategy instance, not "
                f"{type(strategies).__name__}"
            )
        for strategy_id, strategy in strategies.items():
            if not isinstance(strategy_id, str) or not strategy_id:
                raise TypeError(f"strategy ids must be non-empty strings, not {strategy_id!r}")
            if not isinstance(strategy, Strategy):
                what = (
                    f"the class {strategy.__name__} (create one: {strategy.__name__}())"
                    if isinstance(strategy, type)
                    else type(strategy).__name__
                )
                raise TypeError(
                    f"strategy {strategy_id!r} must be a tradeloom.Strategy instance, not {what}"
                )
    if events is not None and feed is not None:
        raise TypeError("give either events or a feed, not both")
    if events is not None and (
        isinstance(events, str | bytes | Mapping) or not isinstance(events, Iterable)
    ):
        raise TypeError(
            f"events must be an iterable of Bar or MarketTick events, not {type(events).__name__}"
        )
    if feed is not None and not callable(getattr(feed, "events", None)):
        raise TypeError(
            f"feed must be a tradeloom Feed (with an events() method), not {type(feed).__name__}"
        )
    if isinstance(plugins, str) or not isinstance(plugins, list | tuple):
        raise TypeError(f"plugins must be a list of plugin objects, not {type(plugins).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable taking a count, not {progress!r}")
    if resume is not None and not isinstance(resume, bool):
        raise TypeError(f"resume must be True or False, not {resume!r}")
    if not isinstance(replay_from_start, bool):
        raise TypeError(f"replay_from_start must be True or False, not {replay_from_start!r}")
