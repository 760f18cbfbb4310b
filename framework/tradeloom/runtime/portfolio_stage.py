"""The portfolio stage: the authoritative books, the fills journal and snapshots."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio

from tradeloom.awaitables import maybe_await
from tradeloom.components import Persistence, PricedMarket
from tradeloom.events import Bar, Fill, MarketTick, PortfolioSnapshot, Rejection
from tradeloom.portfolio import ZERO, EquityTerms, Portfolio, PortfolioBook, book_value
from tradeloom.runtime.results import RunResult
from tradeloom.runtime.stages import Stage, StageServices
from tradeloom.runtime.transport import Topics

_FAILURE_LOG_SECONDS = 30.0
"""During a persistence outage, at most one log line per this many seconds."""


_REJECTIONS_KEPT = 10_000  # rejections kept for the next attempt while journaling them fails
# Fills applied but not yet journaled at which a live run's feed waits for the journal (see
# PortfolioStage.keep_up_with_fills).
UNJOURNALED_FILLS_LIMIT = 10_000


class PortfolioStage(PricedMarket, Stage):
    """Applies each fill once, journals it, and saves snapshots of changed portfolios.

    Fills are journaled before their portfolio's snapshot is saved, so a snapshot never
    refers to a fill the journal lacks. Only portfolios changed since their last successful
    save are written; a failed save leaves them dirty for the next checkpoint; a change made
    while a save is in flight keeps the portfolio dirty.
    """

    role = "portfolio"
    topics = (Topics.MARKET, Topics.FILLS, Topics.REJECTIONS)

    def __init__(
        self,
        services: StageServices,
        book: PortfolioBook,
        persistence: Persistence,
        result: RunResult,
        *,
        snapshot_interval_seconds: float,
        record_equity: bool = True,
        blocking_io_in_thread: bool = False,
        journal_rejections: bool = False,
        save_revalued: bool = False,
    ) -> None:
        super().__init__(services)
        self.book = book
        self.persistence = persistence
        self.result = result
        self.snapshot_interval = snapshot_interval_seconds
        self.record_equity = record_equity
        self._unjournaled: list[Fill] = []
        self.unjournaled_fills_limit = UNJOURNALED_FILLS_LIMIT
        # Across processes rejections are journaled too (a back end with record_rejections):
        # the risk and execution roles read them when they start, so that a signal or order
        # they read again after a crash is not decided or executed a second time.
        self.journal_rejections = journal_rejections
        # A live run's checkpoints also save the portfolios whose holdings moved in price
        # since they were saved: a fill is not the only change of their stored equity.
        self.save_revalued = save_revalued
        self._revalued_unsaved: set[str] = set()  # valued anew by a snapshot that failed to save
        self._unjournaled_rejections: list[Rejection] = []
        self._rejection_failures = 0
        self._last_checkpoint = time.monotonic()
        # Equity changes only with a fill or with the price of an instrument some portfolio
        # holds, so it is recomputed only then (None: recompute at the next market event).
        self._equity: Decimal | None = None
        self._held: frozenset[str] = frozenset()
        self._terms: EquityTerms = []
        # (cash, quantity) when one portfolio holds one instrument: the common case, computed
        # without book_value's calls.
        self._only_holding: tuple[Decimal, Decimal] | None = None
        self._curve = result.equity_curve
        self._add_point = result.equity_curve.add
        # The time of the latest point when fills of that time came after it (see on_fill).
        self._point_missing_fills: datetime | None = None
        self.blocking_io_in_thread = blocking_io_in_thread
        self._journal_lock = anyio.Lock()
        self._failing_since: float | None = None  # monotonic time of an outage's first failure
        self._failure_logged_at = 0.0
        self._failures_unlogged = 0
        self._checkpoint_lock = anyio.Lock()
        # Written just before this stage's first write of state, so that the metadata of a
        # run describes a run that added to the state (see Pipeline._record_settings):
        # ``(what, method, argument)`` as for _persist, or None.
        self.before_first_write: tuple[str, Callable[..., Any], Any] | None = None
        # What stamped the state (see Pipeline._record_settings): kept once a write of this
        # run has made it so, as ``before_first_write``.
        self.after_first_write: tuple[str, Callable[..., Any], Any] | None = None
        self._record_failures = 0

    def routes(self) -> dict[str, Callable[[Any], None]]:
        return {
            Topics.MARKET: self.on_market,
            Topics.FILLS: self.on_fill,
            Topics.REJECTIONS: self.on_rejection,
        }

    def on_market_at(
        self, event: Bar | MarketTick, price: Decimal, ts: datetime, instrument: str
    ) -> None:
        marks = self.book.marks
        stale = self._point_missing_fills
        if stale is not None:
            self._point_missing_fills = None
            if stale != ts:  # at the same time, the point is computed again below
                self._add_point(stale, self._equity_after_fills())  # at that time's prices
        marks[instrument] = price
        if self.record_equity:
            equity = self._equity
            if equity is None:
                equity = self._equity_after_fills()
            elif instrument in self._held:
                only = self._only_holding
                if only is None:
                    equity = self._equity = book_value(self._terms, marks)
                else:
                    # book_value() when one portfolio holds one instrument, this one: the same
                    # operations in the same order, so the same value and exponent.
                    cash, quantity = only
                    equity = self._equity = ZERO + (cash + quantity * price)
            self._add_point(ts, equity)

    def close_equity_curve(self) -> None:
        """End the equity curve at the equity after the last fills: orders sent in
        ``on_stop``, or filled at the end, come after the last market event's point."""
        last = self.result.equity_curve.last
        self._point_missing_fills = None
        if not self.record_equity or last is None:
            return
        equity = self._equity_after_fills()
        if equity != last[1]:
            self._add_point(last[0], equity)  # at the last market time (a live clock is not)

    def _equity_after_fills(self) -> Decimal:
        book = self.book
        self._terms = book.equity_terms()  # the same until the next fill
        self._held = frozenset(instrument for _, held in self._terms for instrument, _, _ in held)
        terms = self._terms
        self._only_holding = (
            (terms[0][0], terms[0][1][0][1]) if len(terms) == 1 and len(terms[0][1]) == 1 else None
        )
        equity = self._equity = book_value(self._terms, book.marks)
        return equity

    def on_fill(self, fill: Fill) -> None:
        stale = self._point_missing_fills
        if stale is not None and fill.ts != stale:
            # A fill of a later time (the executor takes a market event before this stage):
            # the point of the time before is completed first, without it.
            self._point_missing_fills = None
            self._add_point(stale, self._equity_after_fills())
        if fill.strategy_id not in self.book.portfolios:
            self._say_new_portfolio(fill)
        portfolio = self.book.portfolio(fill.strategy_id)
        before = portfolio.position(fill.instrument)
        if not self.book.apply_fill(fill):
            self.services.status.duplicates_ignored += 1
            return
        self._equity = None
        self._unjournaled.append(fill)
        self.result.add_fill(fill, before, portfolio.position(fill.instrument))
        if self.record_equity and fill.ts == self._curve.last_time:
            # Filled at the time of the latest point (fill_at = "last" fills as the
            # strategy acts, after this stage took that time's prices in): the point of
            # that time must hold its fills too, as the strategy's own equity already
            # does. Once, before the next time's point (or the curve's end), not per fill.
            self._point_missing_fills = fill.ts

    def _say_new_portfolio(self, fill: Fill) -> None:
        # The run's own strategies have their portfolios from the start (and restored ones
        # are there too): a fill of another is from somewhere else, most likely a second
        # deployment publishing on these topics (the same topic prefix), or a renamed id.
        self.services.logger.warning(
            "a fill of strategy %r, which this run does not have, opens a portfolio of its own "
            "with the starting cash (order %s): is another deployment publishing on these "
            "topics, or did a strategy id change?",
            fill.strategy_id,
            fill.order_id,
        )

    def on_rejection(self, rejection: Rejection) -> None:
        self.result.add_rejection(rejection)
        if self.journal_rejections:
            self._unjournaled_rejections.append(rejection)

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self.snapshot_interval

    async def flush_journal(self) -> bool:
        """Write every fill applied so far to the journal (and, across processes, every
        rejection seen). False (and what was not written kept for the next attempt) when the
        persistence fails."""
        async with self._journal_lock:
            while self._unjournaled:
                batch = self._unjournaled
                self._unjournaled = []
                try:
                    await self._persist("journaling fills", self.persistence.record_fills, batch)
                except BaseException as exc:
                    # Kept for the next attempt, also when the write was cancelled (a stop
                    # while it waited for a lock): else they would count as journaled.
                    self._unjournaled = batch + self._unjournaled
                    if not isinstance(exc, Exception):
                        raise
                    self._persistence_failed("journaling fills", exc)
                    return False
                self._persistence_works()
            if self._unjournaled_rejections:
                await self._journal_rejections()
        return True

    async def keep_up_with_fills(self) -> None:
        """Backpressure for a live run's feed, called at its pauses: with as many fills waiting
        for the journal as ``unjournaled_fills_limit``, journal them before more market events
        come. Without it, a run whose fills come faster than the back end journals them (a
        replay that trades on most ticks, at full speed) would keep them in memory without
        bound, and a checkpoint, which journals until no fill is left, would never get to its
        snapshots: waiting here for the journal, which a checkpoint may hold, lets it finish.
        Not while the persistence fails: the ticker tries again, and health says so."""
        if len(self._unjournaled) >= self.unjournaled_fills_limit and self._failing_since is None:
            await self.flush_journal()

    async def _journal_rejections(self) -> None:
        """Journal the rejections seen. A failure is no failure of the journal of fills (a
        role that may not create the table: see the persistence docs): it is said, and the
        latest rejections are kept for the next attempt."""
        batch = self._unjournaled_rejections
        self._unjournaled_rejections = []
        record = self.persistence.record_rejections  # type: ignore[attr-defined]
        try:
            await self._persist("journaling rejections", record, batch)
        except BaseException as exc:
            kept = batch + self._unjournaled_rejections
            self._unjournaled_rejections = kept[-_REJECTIONS_KEPT:]
            if not isinstance(exc, Exception):
                raise
            self._rejection_failures += 1
            self.services.logger.log(
                logging.WARNING if self._rejection_failures == 1 else logging.DEBUG,
                "persistence failed while journaling rejections (tried again at each write; "
                "until it works, a risk or execution process restarted after a crash may "
                "decide a rejected signal again): %s: %s",
                type(exc).__name__,
                exc,
            )

    async def checkpoint(self, *, every_portfolio: bool = False) -> list[PortfolioSnapshot]:
        """Journal new fills, then save snapshots of changed portfolios (of all of them with
        ``every_portfolio``: a backtest's last checkpoint, so that the stored state's time is
        the time it got to; with ``save_revalued`` also of those whose holdings' prices moved
        since their last save). Failures are counted and retried at the next checkpoint;
        nothing is marked saved that was not."""
        async with self._checkpoint_lock:
            self._last_checkpoint = time.monotonic()
            if not await self.flush_journal():
                return []
            # No await between the journal becoming complete and taking the snapshots, so a
            # snapshot never refers to a fill the journal lacks.
            portfolios = self.book.portfolios
            if every_portfolio:
                versions = {pid: p.version for pid, p in portfolios.items()}
            else:
                versions = self.book.dirty()
                if self.save_revalued:
                    marks = self.book.marks
                    for pid, portfolio in portfolios.items():
                        if pid not in versions and (
                            pid in self._revalued_unsaved or _revalued(portfolio, marks)
                        ):
                            versions[pid] = portfolio.version
            if not versions:
                return []
            now = self.services.clock.now()
            ids = self.services.ids
            marks = self.book.marks
            snapshots = [
                self.book.portfolios[pid].snapshot(ids, now, marks) for pid in sorted(versions)
            ]
            try:
                await self._persist("saving snapshots", self.persistence.save_snapshots, snapshots)
            except Exception as exc:
                self._persistence_failed("saving snapshots", exc)
                if self.save_revalued:  # taking the snapshots set the holdings' prices
                    self._revalued_unsaved.update(versions)
                return []
            self._revalued_unsaved.difference_update(versions)
            self.book.mark_saved(versions)  # changes made during the save stay dirty
            for snapshot in snapshots:
                self.result.snapshots[snapshot.portfolio_id] = snapshot
                self.publish(Topics.SNAPSHOTS, snapshot, snapshot.portfolio_id)
            self.services.status.last_persistence_error = None
            self._persistence_works()
            return snapshots

    async def _persist(self, what: str, method: Callable[..., Any], argument: Any) -> None:
        await self._record("before_first_write")
        await self._write(what, method, argument)
        await self._record("after_first_write")

    async def _record(self, name: str) -> None:
        """Write the record held in attribute ``name`` (``before_first_write``,
        ``after_first_write``), if any, once. One that fails is tried again at the next write:
        the state matters, a record only informs, so its failure is no failure of the write."""
        record: tuple[str, Callable[..., Any], Any] | None = getattr(self, name)
        if record is None:
            return
        setattr(self, name, None)  # not again from a write made meanwhile
        try:
            await self._write(*record)
        except BaseException as exc:
            setattr(self, name, record)
            if not isinstance(exc, Exception):
                raise
            self._record_failures += 1
            self.services.logger.log(
                logging.WARNING if self._record_failures == 1 else logging.DEBUG,
                "persistence failed while %s (tried again at each write until it works): %s: %s",
                record[0],
                type(exc).__name__,
                exc,
            )

    async def _write(self, what: str, method: Callable[..., Any], argument: Any) -> None:
        in_flight = self.services.status.persistence_in_flight
        in_flight[what] = datetime.now(UTC)  # a back end that hangs shows in the health check
        try:
            if self.blocking_io_in_thread and not inspect.iscoroutinefunction(method):
                # A live pipeline keeps consuming while a synchronous back end does its I/O.
                await anyio.to_thread.run_sync(method, argument)
            else:
                await maybe_await(method(argument))
        finally:
            in_flight.pop(what, None)

    def _persistence_failed(self, what: str, exc: Exception) -> None:
        status = self.services.status
        status.persistence_errors += 1
        status.last_persistence_error = f"{what}: {type(exc).__name__}: {exc}"
        self.counters.errors += 1
        # Retried at every batch and checkpoint: during an outage, the first failure and then
        # one line per interval with the count (health and metrics count every one).
        self._failures_unlogged += 1
        now = time.monotonic()
        if self._failing_since is None or now - self._failure_logged_at >= _FAILURE_LOG_SECONDS:
            repeated = self._failures_unlogged - 1
            self.services.logger.error(
                "persistence failed while %s: %s%s",
                what,
                exc,
                f" ({repeated} more failure(s) since the last report)" if repeated else "",
            )
            self._failing_since = self._failing_since or now
            self._failure_logged_at = now
            self._failures_unlogged = 0

    def _persistence_works(self) -> None:
        if self._failing_since is None:
            return
        self.services.logger.warning(
            "persistence works again after %.1f s of failures%s",
            time.monotonic() - self._failing_since,
            f" ({self._failures_unlogged} more since the last report)"
            if self._failures_unlogged
            else "",
        )
        self._failing_since = None
        self._failures_unlogged = 0

    def final_snapshots(self) -> dict[str, PortfolioSnapshot]:
        """Snapshots of every portfolio as it is now (saved or not), for the run's result."""
        now = self.services.clock.now()
        return {
            pid: portfolio.snapshot(self.services.ids, now, self.book.marks)
            for pid, portfolio in self.book.portfolios.items()
        }


def _revalued(portfolio: Portfolio, marks: Mapping[str, Decimal]) -> bool:
    """Whether a holding of ``portfolio`` has a price other than the one it was last valued
    at (by its last fill or snapshot)."""
    for instrument, holding in portfolio.holdings.items():
        if holding.quantity:
            mark = marks.get(instrument)
            if mark is not None and mark != holding.last_price:
                return True
    return False
