"""Counters and times that describe a running pipeline, for results, metrics and health."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from tradeloom.events import Event, MarketEvent

StageObserver = Callable[[str, str, "Event", float], None]
"""Called after a stage handled an event: ``(stage, topic, event, seconds)``. Must not raise."""


@attrs.define
class StageCounters:
    events_in: int = 0
    events_out: int = 0
    errors: int = 0


@attrs.define
class PipelineStatus:
    """Mutable status shared by the stages of one process."""

    started_at: datetime | None = None
    stopped_at: datetime | None = None
    #: When the pipeline began to stop (wall clock, UTC): it takes no more input and finishes
    #: what is in flight. ``None`` while it runs.
    draining_since: datetime | None = None
    stages: dict[str, StageCounters] = attrs.Factory(dict)
    market_events: int = 0
    last_market_time: dict[str, datetime] = attrs.Factory(dict)
    #: The market event delivered last (recorded once per block of events).
    last_market_event: MarketEvent | None = None
    last_market_wall_time: datetime | None = None
    rejections: Counter[str] = attrs.Factory(Counter)
    dead_letters: int = 0
    duplicates_ignored: int = 0
    persistence_errors: int = 0
    last_persistence_error: str | None = None
    reconnect_exhausted: str | None = None
    #: Connections trying to reach their broker again, by what they are (``"redpanda
    #: transport"``): since when and why. Empty while every connection is up.
    reconnecting: dict[str, str] = attrs.Factory(dict)
    #: Messages not yet consumed, keyed ``"<role>/<topic>"`` (summed over the partitions this
    #: process consumes). A broker transport fills it; empty on the in-process transport.
    consumer_lag: dict[str, int] = attrs.Factory(dict)
    #: When the pipeline's event loop last ran its periodic work (wall clock, UTC; about every
    #: quarter second in a live run). Older means something blocks the loop: a stage in a
    #: long computation, a synchronous call that hangs.
    loop_ran_at: datetime | None = None
    #: Writes to the persistence that have not returned yet, by what they do (``"journaling
    #: fills"``, ``"saving snapshots"``): since when (wall clock, UTC).
    persistence_in_flight: dict[str, datetime] = attrs.Factory(dict)
    #: Set by a metrics plugin to time each stage's handling of each event; ``None`` (the
    #: default) keeps the per-event path free of timing.
    stage_observer: StageObserver | None = None

    def stage(self, name: str) -> StageCounters:
        counters = self.stages.get(name)
        if counters is None:
            counters = self.stages[name] = StageCounters()
        return counters
