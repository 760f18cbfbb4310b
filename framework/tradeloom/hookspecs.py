"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions decorated by :data:`tradeloom.hookimpl` and
named after the specs below. Plugins are found through the ``tradeloom`` entry-point group,
named in ``[plugins] modules`` of the configuration or with ``-p MODULE`` on the command line,
or passed from code (``tradeloom.backtest(..., plugins=[...])``, likewise ``tradeloom.run``).

The ``tradeloom_register_*`` hooks are called once, when a pipeline is assembled. Each returns
a mapping of component name to factory (usually a class). Configuration picks components by
name and passes its parameters to the factory as keyword arguments, validated against the
factory's signature. Two plugins registering the same name for the same kind is an error that
names both. A factory may also be given as a ``"package.module:Name"`` string: it is imported
only when such a component is first built, so a plugin whose components a run does not use
adds nothing to its start-up (a failing import is then an error naming the plugin).

Lifecycle and observer hooks may return an awaitable; the runtime awaits it. Observer hooks
that run per event (:func:`tradeloom_event_observed`) are only dispatched when at least one
plugin implements them, so an unused observer costs nothing on the hot path.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tradeloom.events import Event
    from tradeloom.runtime.pipeline import Pipeline
    from tradeloom.runtime.results import RunResult

hookspec = pluggy.HookspecMarker("tradeloom")

# --------------------------------------------------------------------------------------------
# Component registration


@hookspec
def tradeloom_register_feeds() -> Mapping[str, Any]:
    """Register market-data feeds.

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.Feed` from the
    ``[feed.params]`` table of the configuration.

    .. code-block:: python

        @hookimpl
        def tradeloom_register_feeds():
            return {"my_feed": MyFeed}
    """


@hookspec
def tradeloom_register_strategies() -> Mapping[str, Any]:
    """Register strategies.

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.Strategy` from the
    ``params`` of a ``[[strategies]]`` entry.
    """


@hookspec
def tradeloom_register_executors() -> Mapping[str, Any]:
    """Register executors (order to fill).

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.Executor`
    from ``[executor.params]``.
    """


@hookspec
def tradeloom_register_validators() -> Mapping[str, Any]:
    """Register pre-trade validators.

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.Validator`
    from the ``params`` of a ``[[validators]]`` entry. Every configured validator must pass a
    signal before it becomes an order.
    """


@hookspec
def tradeloom_register_health_checks() -> Mapping[str, Any]:
    """Register health checks.

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.HealthCheck`
    from the ``params`` of a ``[[health.checks]]`` entry.
    """


@hookspec
def tradeloom_register_persistence() -> Mapping[str, Any]:
    """Register persistence back ends (fills journal and portfolio snapshots).

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.Persistence`
    from ``[persistence.params]``.
    """


@hookspec
def tradeloom_register_codecs() -> Mapping[str, Any]:
    """Register codecs that turn events into bytes and back.

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.Codec`.
    """


@hookspec
def tradeloom_register_id_generators() -> Mapping[str, Any]:
    """Register event-id generators.

    Return ``{name: factory}``; the factory builds a :class:`tradeloom.components.IdGenerator`.
    """


@hookspec
def tradeloom_register_transports() -> Mapping[str, Any]:
    """Register transports that carry events between pipeline stages.

    Return ``{name: factory}``; the factory builds a
    :class:`tradeloom.runtime.transport.Transport` from the ``[transport]`` table (its keys are the
    parameters; ``[pipeline] transport`` names it). What a transport must do is in
    docs/writing-transport.md.
    """


# --------------------------------------------------------------------------------------------
# Command line


@hookspec
def tradeloom_add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add sub-commands to the ``tradeloom`` command line.

    ``subparsers`` is the :mod:`argparse` sub-parser collection. Set ``func`` on the parser
    (``parser.set_defaults(func=handler)``); the handler receives the parsed
    :class:`argparse.Namespace` and returns an exit code. A usage error (an unknown option,
    a value its ``type`` refuses) exits with status 2, or with the command's own
    ``parser.set_defaults(usage_error_status=N)`` (``tradeloom health`` uses 3, Nagios'
    "unknown").
    """


# --------------------------------------------------------------------------------------------
# Lifecycle


@hookspec
def tradeloom_pipeline_started(pipeline: Pipeline) -> Any:
    """The pipeline has assembled its components and is about to take input.

    May return an awaitable.
    """


@hookspec
def tradeloom_pipeline_stopping(pipeline: Pipeline) -> Any:
    """The pipeline stopped taking input and is draining. May return an awaitable."""


@hookspec
def tradeloom_pipeline_stopped(pipeline: Pipeline, result: RunResult) -> Any:
    """The pipeline has drained, saved its final state and closed its components.

    ``result`` holds the fills, final snapshots and statistics. Also called after a run that
    failed or was interrupted: ``result`` then holds what happened until then, and
    ``result.interrupted`` says where an interrupted run stopped. May return an awaitable.
    """


# --------------------------------------------------------------------------------------------
# Observers (metrics, audit). Dispatched only when implemented.


@hookspec
def tradeloom_event_observed(stage: str, direction: str, event: Event) -> None:
    """An event entered (``direction="in"``) or left (``"out"``) a stage.

    ``stage`` is the role: ``"feed"`` (market events leaving the feed, ``"out"`` only),
    ``"strategy"``, ``"risk"``, ``"execution"`` or ``"portfolio"``.

    Called synchronously for every event, so it must be fast and must not raise; it is only
    dispatched when at least one plugin implements it.
    """
