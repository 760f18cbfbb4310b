"""Resuming a backtest: the market events the stored state already holds are skipped.

A backtest's stored state (snapshots and fills) carries simulated times: everything up to its
latest time was processed. A resumed backtest skips the events at or before that time, so no
fill is counted twice, and each block of a run ends with the rest of its last time's events
(:func:`rest_of_time`), so that a stop falls between two times. The strategies see the skipped
events, with their orders not sent (:class:`WarmUp`): their indicators are then as they were
where the stored state ends, and the resumed run trades as one that never stopped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import anyio

from tradeloom.events import Fill, MarketEvent, Order, Signal
from tradeloom.runtime.in_flight import CarriedOver, InFlight, carry_over
from tradeloom.runtime.results import RunResult

_PAUSE_EVERY = 1024
"""An async feed's warm-up pauses after this many events, as a run does."""


if TYPE_CHECKING:
    from tradeloom.runtime.clock import SimulatedClock, WallClock
    from tradeloom.runtime.stages import StrategyStage


class WarmUp:
    """Hands a strategy stage the market events a resumed backtest skips, as the run that
    stored the state had them: the clock moves with them, and every context's ``warming_up``
    is set (from ``on_start``, which ``start`` calls at the first of them, to the first event
    after the stored state), so what strategies buy or sell then is not sent: the stored
    state holds that time's outcomes.

    When the warm-up ends, what was in flight when the state was stored is placed again
    (``in_flight``, see :mod:`tradeloom.runtime.in_flight`): orders at the executor through
    ``place_again``, signals at the risk stage as the strategies send them. Without that
    record, the orders made at the last time are sent, unless the state holds a fill at that
    time for the same strategy and instrument: an executor that fills at once, at the last
    price, filled them then; or an order made before filled then, and which of them had an
    outcome is not known (not sending loses an order, sending could fill one twice)."""

    def __init__(
        self,
        stage: StrategyStage,
        clock: SimulatedClock | WallClock,
        start: Callable[[MarketEvent], None],
        stop_requested: Callable[[], bool],
        logger: logging.Logger,
        last_time: datetime | None = None,
        filled_at_last_time: Iterable[Fill] = (),
        price: Callable[[MarketEvent], None] | None = None,
        in_flight: InFlight | None = None,
        place_again: Callable[[list[tuple[Signal, Order]]], None] | None = None,
    ) -> None:
        self.stage = stage
        self.clock = clock
        self.start = start
        self.stop_requested = stop_requested
        self.logger = logger
        self.last_time = last_time
        """The stored state's latest time."""
        self.in_flight = in_flight if place_again is not None else None
        self.place_again = place_again
        self._filled = {(fill.strategy_id, fill.instrument) for fill in filled_at_last_time}
        self.price = price
        """Hands the latest warm-up event of each instrument to the stages that price orders
        (risk, execution) before what was in flight is placed again: they had those prices in
        the run that stored the state."""
        self._latest: dict[str, MarketEvent] = {}
        self.events = 0
        self.ended = False

    def event(self, event: MarketEvent) -> None:
        if not self.events:
            for ctx in self.stage.contexts.values():
                ctx.warming_up = True
                ctx._warm_up_last_time = self.last_time
            self.start(event)
        self.events += 1
        if self.stop_requested():
            return
        self.clock.advance(event.ts)
        self._latest[event.instrument] = event
        self.stage.on_market(event)

    def end(self, after: datetime, *, goes_on: bool = True) -> None:
        """At the first event after the stored state (at ``after``), or at the feed's end
        (``goes_on=False``: nothing is placed again, as no price comes after it)."""
        if self.ended:
            return
        self.ended = True
        self.clock.advance(after)  # what the run saves is stamped no earlier
        unsent = 0
        made_again: dict[str, list[Signal]] = {}
        for strategy_id, ctx in self.stage.contexts.items():
            ctx.warming_up = False
            unsent += ctx.unsent_while_warming_up
            made_again[strategy_id], ctx._held_while_warming_up = ctx._held_while_warming_up, []
        to_send: list[Signal] = []
        carried = CarriedOver()
        if goes_on and self.in_flight is not None:
            # Takes the signals it matches out of made_again: the others are closed below.
            carried = carry_over(self.in_flight, self.stage.contexts, made_again)
            to_send = carried.signals
        elif goes_on:
            to_send = [
                signal
                for made in made_again.values()
                for signal in made
                if (signal.strategy_id, signal.instrument) not in self._filled
            ]
        sending = {id(signal) for signal in to_send}
        for strategy_id, made in made_again.items():
            for signal in made:
                if id(signal) not in sending:
                    self.stage.contexts[strategy_id]._open_orders.close(signal.event_id)
                    unsent += 1
        self._say_what_goes_on(unsent, len(to_send), carried)
        if goes_on and self.price is not None:
            for latest in self._latest.values():
                self.price(latest)
        if carried.orders and self.place_again is not None:
            self.place_again(carried.orders)
        if to_send:
            self.stage.send_held(to_send)

    def _say_what_goes_on(self, unsent: int, sent: int, carried: CarriedOver) -> None:
        if carried.unknown:
            self.logger.warning(
                "the stored state has %s order(s) in flight of strategies this run does not "
                "have (%s): not placed again",
                f"{sum(carried.unknown.values()):,}",
                ", ".join(map(repr, sorted(carried.unknown))),
            )
        if not self.events:
            return
        if self.in_flight is None:
            goes_on = f"; {sent:,} made at its last time sent now" if sent else ""
        else:
            goes_on = (
                f"; {len(carried.orders):,} order(s) and {len(carried.signals):,} signal(s) in "
                "flight when the state was stored placed again"
            )
        self.logger.info(
            "strategies warmed up on the %s market event(s) the stored state holds "
            "(%s signal(s) made on them not sent%s)",
            f"{self.events:,}",
            f"{unsent:,}",
            goes_on,
        )


class ResumePoint:
    """Skips the events at or before ``result.resumed_after``, counting them in
    ``result.skipped_events``. Every event is judged: feeds are in time order per instrument
    only."""

    def __init__(
        self, result: RunResult, logger: logging.Logger, warm_up: WarmUp | None = None
    ) -> None:
        if result.resumed_after is None:
            raise ValueError("the result has no resume point")
        self.after: datetime = result.resumed_after
        self.result = result
        self.logger = logger
        self.warm_up = warm_up
        self.skipped_instruments: set[str] = set()
        """The instruments of the skipped events: they were seen, before the resume point."""

    def already_stored(self, event: MarketEvent) -> bool:
        if event.ts > self.after:
            return False
        self.result.skipped_events += 1
        self.skipped_instruments.add(event.instrument)
        return True

    def events(self, events: Iterator[MarketEvent]) -> Iterator[MarketEvent]:
        """A plain feed's events after the stored state (its warm-up, if any, is the pump's:
        ``Pipeline._warm_up`` reads what the state holds a block at a time)."""
        already_stored = self.already_stored
        passed = 0
        for event in events:
            if not already_stored(event):
                passed += 1
                yield event
        self.log_end(passed)

    async def events_async(self, events: AsyncIterator[MarketEvent]) -> AsyncIterator[MarketEvent]:
        already_stored = self.already_stored
        warm_up = self.warm_up.event if self.warm_up is not None else None
        passed = 0
        async for event in events:
            if not already_stored(event):
                self.end_warm_up()
                passed += 1
                yield event
            elif warm_up is not None and not passed:
                warm_up(event)
                if not self.result.skipped_events % _PAUSE_EVERY:
                    await anyio.sleep(0)  # a stop or Ctrl-C may come between two blocks
        self.end_warm_up(goes_on=False)
        self.log_end(passed)

    def end_warm_up(self, *, goes_on: bool = True) -> None:
        """The warm-up is over: an event after the stored state came (``goes_on``), or the
        feed ended."""
        if self.warm_up is not None:
            self.warm_up.end(self.after, goes_on=goes_on)

    def log_end(self, passed: int) -> None:
        """At the end of the feed: what was skipped, or that all of it was."""
        skipped = self.result.skipped_events
        if passed or not skipped:
            self.logger.info(
                "resumed after %s, the latest time in the stored state: skipped %s market "
                "event(s) at or before it",
                self.after.isoformat(),
                f"{skipped:,}",
            )
            return
        self.logger.warning(
            "resumed after %s, the latest time in the stored state: all %s market events of "
            "the feed are at or before it, so there was nothing new to backtest (if a live "
            "run wrote that state, its times are the wall clock's: continue it with "
            "tradeloom run)",
            self.after.isoformat(),
            f"{skipped:,}",
        )


def rest_of_time(
    source: Iterator[MarketEvent], now: datetime
) -> tuple[list[MarketEvent], list[MarketEvent]]:
    """The events read from ``source`` while they are stamped ``now``; and the first one that
    is not, read ahead (none when ``source`` ended)."""
    rest: list[MarketEvent] = []
    for event in source:
        if event.ts != now:
            return rest, [event]
        rest.append(event)
    return rest, []
