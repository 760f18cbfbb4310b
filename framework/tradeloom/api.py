"""The Python API: run a backtest or a live pipeline from code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from tradeloom.components import Feed
from tradeloom.events import MarketEvent
from tradeloom.runtime.pipeline import Pipeline
from tradeloom.runtime.results import RunResult
from tradeloom.settings import Settings, build_settings, load_settings
from tradeloom.strategy import Strategy

ConfigLike = str | Path | Settings | Mapping[str, Any] | None


def make_settings(
    config: ConfigLike = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from a TOML path, a mapping shaped like the TOML file, or Settings; the
    environment applies to paths and mappings, and ``overrides`` win over everything."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a mapping, not {type(overrides).__name__}")
    if config is not None and not isinstance(config, str | Path | Settings | Mapping):
        raise TypeError(
            "config must be a tradeloom.toml path, a mapping shaped like it or Settings, not "
            f"{type(config).__name__}"
        )
    extra = dict(overrides or {})
    if isinstance(config, Settings):
        if not extra:
            return config
        return build_settings(config.model_dump(), extra)
    if config is None or isinstance(config, str | Path):
        return load_settings(config, extra)
    return build_settings(dict(config), extra)


def backtest(
    config: ConfigLike = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    strategies: Mapping[str, Strategy] | None = None,
    events: Iterable[MarketEvent] | None = None,
    feed: Feed | None = None,
    plugins: Sequence[Any] = (),
    progress: Callable[[int], None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Replay market data through the pipeline on a simulated clock and return the result.

    ``config`` is a ``tradeloom.toml`` path, a mapping of the same shape or :class:`Settings`.
    Strategies, events and a feed may also be given from code; ``plugins`` are registered
    in addition to the installed ones. A backtest refuses persistence that already holds state
    unless ``resume`` is true.
    """
    settings = make_settings(config, overrides)
    pipeline = Pipeline(
        settings,
        mode="backtest",
        strategies=strategies,
        events=events,
        feed=feed,
        plugins=plugins,
        progress=progress,
        resume=resume,
    )
    return _run_to_the_end(pipeline)


def run(
    config: ConfigLike = None,
    *,
    roles: Iterable[str] = ("all",),
    overrides: Mapping[str, Any] | None = None,
    plugins: Sequence[Any] = (),
    replay_from_start: bool = False,
) -> RunResult:
    """Run a live pipeline (wall clock) until it is stopped or its input ends.

    A replay published to a broker goes on after the events an earlier run published (see
    :mod:`tradeloom.runtime.replay_position`); ``replay_from_start=True`` publishes it from
    its first event."""
    settings = make_settings(config, overrides)
    pipeline = Pipeline(
        settings,
        mode="live",
        roles=roles,
        plugins=plugins,
        replay_from_start=replay_from_start,
    )
    return _run_to_the_end(pipeline)


def _run_to_the_end(pipeline: Pipeline) -> RunResult:
    """Run the pipeline in an event loop of its own and return its result.

    Where this thread already runs an event loop (a Jupyter notebook, async code calling the
    synchronous API), the run gets a thread of its own and this call waits for it, as it does
    anywhere else. Ctrl-C then interrupts the run as it would without the thread: its task is
    cancelled, the run saves and stops, and ``KeyboardInterrupt`` is raised here; a second
    Ctrl-C raises it at once, and the run's thread finishes stopping on its own.
    """
    if not _event_loop_runs_here():
        return anyio.run(pipeline.run)
    started: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []
    interrupted = threading.Event()  # Ctrl-C came, maybe before the run's task existed
    outcome: list[RunResult | BaseException] = []
    ended = threading.Event()

    async def run_noting_its_task() -> RunResult:
        task = asyncio.current_task()
        assert task is not None
        started.append((asyncio.get_running_loop(), task))
        if interrupted.is_set():
            task.cancel()  # at the run's first await: it stops as a cancelled run does
        return await pipeline.run()

    def run_in_this_thread() -> None:
        try:
            outcome.append(anyio.run(run_noting_its_task))
        except BaseException as exc:  # raised again in the caller's thread
            outcome.append(exc)
        finally:
            ended.set()

    # Waited for with an Event, not Thread.join(): in Python 3.11 a join interrupted by
    # Ctrl-C may mark the thread as ended while it still runs.
    threading.Thread(target=run_in_this_thread, name="tradeloom-run", daemon=True).start()
    try:
        while not ended.wait(0.1):  # a wait with a timeout lets Ctrl-C through
            pass
    except KeyboardInterrupt:
        interrupted.set()
        if started:
            loop, task = started[0]
            loop.call_soon_threadsafe(task.cancel)
        while not ended.wait(0.1):
            pass
        raise
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _event_loop_runs_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
