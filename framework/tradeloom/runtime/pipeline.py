"""Assembling components from configuration and running them as a pipeline."""

from __future__ import annotations

import contextlib
import gc
import inspect
import itertools
import logging
import os
import time
import traceback
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Literal, cast

import anyio
import pydantic

from tradeloom.awaitables import (
    call_hook_and_await,
    exception_leaves,
    maybe_await,
    plugin_failure,
    sole_exception,
)
from tradeloom.backoff import ReconnectExhausted
from tradeloom.components import (
    Codec,
    DeadLetter,
    Executor,
    Feed,
    FeedContext,
    HealthCheck,
    IdGenerator,
    Persistence,
    Validator,
    advance_ids_past,
)
from tradeloom.errors import (
    ConfigError,
    CorruptStateError,
    EventOrderError,
    FeedError,
    PersistenceError,
    PluginError,
    TradeloomError,
)
from tradeloom.events import Bar, HealthReport, MarketEvent, MarketTick, Order, Rejection
from tradeloom.plugins import PluginManager, load_plugin_manager
from tradeloom.portfolio import PortfolioBook
from tradeloom.runtime.arguments import check_pipeline_arguments
from tradeloom.runtime.callbacks import STRATEGY_CALLBACKS, refuse_async_callbacks
from tradeloom.runtime.clock import SimulatedClock, WallClock
from tradeloom.runtime.collector import run_collector
from tradeloom.runtime.dead_letter_file import DeadLetterFile
from tradeloom.runtime.dedupe import RecentIds
from tradeloom.runtime.delivery import BlockDelivery, block_delivery
from tradeloom.runtime.health import run_health_checks
from tradeloom.runtime.in_flight import (
    IN_FLIGHT_KEY,
    InFlight,
    read_in_flight,
    record_in_flight,
)
from tradeloom.runtime.portfolio_stage import PortfolioStage
from tradeloom.runtime.replay_position import ReplayPositionKeeper, feed_key
from tradeloom.runtime.results import EquityCurve, RunResult
from tradeloom.runtime.resume import ResumePoint, WarmUp, rest_of_time
from tradeloom.runtime.settings_record import (
    CLOCK_KEY,
    METADATA_KEY,
    changed_settings,
    settings_record,
)
from tradeloom.runtime.stages import (
    OUTCOMES_REMEMBERED,
    DirectRoute,
    ExecutionStage,
    RiskStage,
    Stage,
    StageServices,
    StrategyStage,
)
from tradeloom.runtime.status import PipelineStatus
from tradeloom.runtime.transport import Topics, Transport
from tradeloom.settings import Settings, naming_environment
from tradeloom.strategy import Strategy
from tradeloom.suggestions import closest_name

ROLES = ("feed", "strategy", "risk", "execution", "portfolio")
LIVE_EVENTS_KEPT = 10_000  # fills and rejections a live run keeps in memory (counts are complete)
_YIELD_EVERY = 1024  # market events between two yields of a backtest (stop, checkpoint, progress)
_LIVE_YIELD_EVERY = 64  # of a live run reading a replay: a stop or a checkpoint is not kept waiting
_FREEZE_EVERY_BLOCKS = 8
_TURNS_AT_A_PAUSE = 4  # event-loop turns at each pause between blocks (see _yield_point)
_FEED_CLOSE_SECONDS = 10.0  # the most a feed's close may take once the run was stopped
_SETTLING_ROUNDS = 100  # of rejections at the end of input that a strategy answers by sending
DEAD_LETTERS_LOGGED = 10  # a backtest's bad input logged one by one at WARNING (the rest: DEBUG)

Mode = Literal["backtest", "live"]


class EventListFeed(Feed):
    """A feed over events given from code (tests, notebooks)."""

    def __init__(self, events: Iterable[MarketEvent]) -> None:
        self._events = events

    def events(self, ctx: FeedContext) -> Iterable[MarketEvent]:  # type: ignore[override]
        return iter(self._events)


def resolve_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen: set[str] = set()
    for role in roles:
        if role == "all":
            chosen.update(ROLES)
        elif role in ROLES:
            chosen.add(role)
        else:
            raise ConfigError(f"unknown role {role!r}; roles: all, {', '.join(ROLES)}")
    return frozenset(chosen)


class Pipeline:
    """Feed → strategies → validators → executor → portfolio → persistence.

    ``mode="backtest"`` runs on a simulated clock moved by the data and ends with the data;
    ``mode="live"`` runs on the wall clock until :meth:`stop` (or the end of a finite feed on
    an in-process transport). ``roles`` picks which stages run in this process.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        manager: PluginManager | None = None,
        mode: Mode = "backtest",
        roles: Iterable[str] = ("all",),
        feed: Feed | None = None,
        events: Iterable[MarketEvent] | None = None,
        strategies: Mapping[str, Strategy] | None = None,
        plugins: Sequence[Any] = (),
        progress: Callable[[int], None] | None = None,
        logger: logging.Logger | None = None,
        resume: bool | None = None,
        replay_from_start: bool = False,
    ) -> None:
        check_pipeline_arguments(
            roles=roles,
            strategies=strategies,
            events=events,
            feed=feed,
            plugins=plugins,
            progress=progress,
            resume=resume,
            replay_from_start=replay_from_start,
        )
        self.settings = settings
        self.mode = mode
        # A live pipeline always continues from stored state; a backtest only when asked.
        self.resume = mode == "live" if resume is None else resume
        # A replay published to a broker goes on where its last run got to, unless told.
        self.replay_from_start = replay_from_start
        self.roles = resolve_roles(roles)
        self.manager = manager or load_plugin_manager(settings, plugins)
        if manager is not None:
            for plugin in plugins:
                manager.register(plugin)
        self.logger = logger or logging.getLogger("tradeloom.pipeline")
        failed = self.manager.failed_modules(settings.plugins.modules)
        if failed:
            # Named in the configuration, as -p names one on the command line: what it
            # registers is wanted, so the run does not go on to fail on something else.
            raise ConfigError("[plugins] modules: " + "; ".join(failed))
        for message in self.manager.problems():
            self.logger.warning(message)
        self.progress = progress
        self.status = PipelineStatus()
        self.result = RunResult(
            equity_curve=EquityCurve(settings.portfolio.equity_curve_points),
            keep_events=None if mode == "backtest" else LIVE_EVENTS_KEPT,
        )
        self._stop_requested = False
        self._stop_event: anyio.Event | None = None
        self._feed_wait: anyio.CancelScope | None = None
        self._failure: Exception | None = None

        clock_kind = settings.pipeline.clock
        if clock_kind == "auto":
            clock_kind = "simulated" if mode == "backtest" else "wall"
        self.clock: SimulatedClock | WallClock = (
            SimulatedClock() if clock_kind == "simulated" else WallClock()
        )
        manager_ = self.manager
        with naming_environment("pipeline", "transport"):
            self.ids: IdGenerator = manager_.create("id_generator", settings.pipeline.id_generator)
            self.codec: Codec = manager_.create("codec", settings.pipeline.codec)
            self.transport: Transport = manager_.create(
                "transport", settings.pipeline.transport, settings.transport
            )
            if mode == "backtest" and self.resume and not isinstance(self.clock, SimulatedClock):
                raise ConfigError(
                    'a backtest on the wall clock ([pipeline] clock = "wall") cannot be resumed: '
                    "its state is stamped with the wall clock, not with the data's time it got "
                    "to, so a resume would skip all of the data; backtest from a new state file"
                )
            if mode == "backtest" and not self.transport.synchronous:
                # The simulated clock moves with the feed: stages that took their events from
                # a broker, later and in their own tasks, would see times the clock has
                # passed, and the backtest would end before they did (it used to end without
                # their fills).
                raise ConfigError(
                    "a backtest runs every stage in one process on the simulated clock, which "
                    f"a transport between processes ({settings.pipeline.transport!r}) cannot "
                    "follow: backtest with the in-process transport, the default (leave out "
                    "[pipeline] transport and the [transport] table)"
                )
            if self.transport.synchronous and self.roles != frozenset(ROLES):
                raise ConfigError(
                    f"the {settings.pipeline.transport!r} transport connects stages within one "
                    f"process only, so it runs every role; roles {sorted(self.roles)} need a "
                    "transport between processes, such as redpanda"
                )
        self.feed: Feed | None = None
        if "feed" in self.roles:
            with naming_environment("feed"):
                self.feed = self._build_feed(feed, events)
        # What the feed was built from, when it was (a replay's position belongs to it).
        self._feed_settings = (
            settings.feed.model_dump()
            if self.feed is not None and feed is None and events is None and settings.feed
            else None
        )
        self.strategies: dict[str, Strategy] = {}
        self._strategy_instruments: dict[str, Sequence[str] | None] = {}
        if "strategy" in self.roles:
            with naming_environment("strategies"):
                self._build_strategies(strategies or {})
        self.validators: list[tuple[str, Validator]] = []
        if "risk" in self.roles:
            with naming_environment("validators"):
                self.validators = self._build_validators()
        self.executor: Executor | None = None
        if "execution" in self.roles:
            with naming_environment("executor"):
                self.executor = manager_.create(
                    "executor", settings.executor.name, settings.executor.params
                )
        # An execution process reads the journal for the orders filled already (see
        # ExecutionStage.remember_filled) and mints fill ids past the journaled ones.
        needs_state = bool(self.roles & {"strategy", "risk", "execution", "portfolio"})
        self.persistence: Persistence | None = None
        if needs_state:
            with naming_environment("persistence"):
                self.persistence = manager_.create(
                    "persistence", settings.persistence.name, settings.persistence.params
                )
        with naming_environment("health"):
            self.health_checks: list[tuple[str, HealthCheck]] = [
                (entry.name, manager_.create("health_check", entry.name, entry.params))
                for entry in settings.health.checks
            ]
        for _, check in self.health_checks:
            check.new_id = self.ids.new_id
        self.stages: list[Stage] = []
        path = settings.pipeline.dead_letter_file
        self.dead_letter_file = DeadLetterFile(path) if path else None
        self.portfolio_stage: PortfolioStage | None = None
        self.strategy_stage: StrategyStage | None = None
        self.risk_stage: RiskStage | None = None
        self._portfolios_at_start: frozenset[str] = frozenset()
        self._stage_handlers: list[tuple[Callable[..., None], Stage]] = []
        self._event_observer_set: Callable[[str, str, Any], None] | None = None
        self._freezing = False
        self._blocks = 0  # yield points passed
        self._progress_reported = 0  # market events reported to ``progress``
        self._resumed_from_state = False
        self._stored_until: datetime | None = None  # the latest time in the stored state
        self._stored_clock: str | None = None  # what stamped it, when the state says
        self._opened_source: Iterator[MarketEvent] | None = None  # see _open_backtest_feed
        self._opened_async_source: Any = None
        self._stages_start_at_first_event = False  # see _open_backtest_feed
        self._waiting_for_feed = False  # the pump awaits an async feed's next event
        self._opened_failure: ReconnectExhausted | None = None
        # Closed by _close: a generator the feed returned, left where a failure stopped it.
        self._feed_iterator: Iterator[MarketEvent] | AsyncIterator[MarketEvent] | None = None
        self._resume: ResumePoint | None = None
        self._settings_record: tuple[str, Callable[..., Any], Any] | None = None
        self._clock_record: tuple[str, Callable[..., Any], Any] | None = None
        self._stages_started = False
        self._warming_up = False  # a resumed backtest's pump warms the strategies up first
        # The pump is between two times (at a pause or the end of a plain feed's input, at
        # the end of an async feed's): the latest time was taken whole.
        self._between_times = False
        self._waiting_orders_failed = False
        self._in_flight_save_failed = False
        self._in_flight_at_end: tuple[Callable[..., Any], str] | None = None
        self._downstream_failure: BaseException | None = None
        self._deliveries: dict[tuple[int, ...], BlockDelivery] = {}
        self._replay_position: ReplayPositionKeeper | None = None
        self._refusing: _Refusing | None = None  # a live plain feed's events, counted
        self._async_events_taken = 0
        self._feed_ended = False  # the feed gave its last event (not stopped)

    # -- assembly ------------------------------------------------------------------------

    def _build_feed(self, feed: Feed | None, events: Iterable[MarketEvent] | None) -> Feed:
        if feed is not None:
            return feed
        if events is not None:
            return EventListFeed(events)
        if self.settings.feed is None:
            raise ConfigError("no feed configured: add a [feed] section with a name and params")
        built: Feed = self.manager.create(
            "feed", self.settings.feed.name, self.settings.feed.params
        )
        return built

    def _build_strategies(self, from_code: Mapping[str, Strategy]) -> None:
        for entry in self.settings.strategies:
            self.strategies[entry.strategy_id] = self.manager.create(
                "strategy", entry.name, entry.params
            )
            self._strategy_instruments[entry.strategy_id] = entry.instruments
        for strategy_id, strategy in from_code.items():
            if strategy_id in self.strategies:
                raise ConfigError(f"two strategies share the id {strategy_id!r}")
            self.strategies[strategy_id] = strategy
            self._strategy_instruments[strategy_id] = None
        if not self.strategies:
            raise ConfigError("no strategy configured: add a [[strategies]] entry")
        for strategy_id, strategy in self.strategies.items():
            refuse_async_callbacks(f"strategy {strategy_id!r}", strategy, STRATEGY_CALLBACKS)

    def _build_validators(self) -> list[tuple[str, Validator]]:
        built: list[tuple[str, Validator]] = []
        names: set[str] = set()
        for entry in self.settings.validators:
            name = entry.name
            suffix = 2
            while name in names:
                name = f"{entry.name}#{suffix}"
                suffix += 1
            names.add(name)
            validator = self.manager.create("validator", entry.name, entry.params)
            refuse_async_callbacks(f"validator {name!r}", validator, ("validate",))
            built.append((name, validator))
        return built

    def _event_observer(self) -> Callable[[str, str, Any], None] | None:
        hook = self.manager.hook.tradeloom_event_observed
        if not hook.get_hookimpls():
            return None  # nothing to call per event

        def observe(stage: str, direction: str, event: Any) -> None:
            try:
                hook(stage=stage, direction=direction, event=event)
            except Exception as exc:
                raise plugin_failure(hook, exc) from exc

        return observe

    def _portfolio_ids(self) -> list[str]:
        ids = [entry.strategy_id for entry in self.settings.strategies]
        return ids + [sid for sid in self.strategies if sid not in ids]

    def _judge_stored_state(self, snapshots: Any, fills: Any) -> None:
        """A backtest refuses stored state unless it resumes from it; say what a resume
        finds (no state, portfolios no strategy trades)."""
        if (snapshots or fills) and not self.resume:
            raise ConfigError(
                f"{self._stored_state_name()} already holds state from an "
                f"earlier run ({_count(len(snapshots), 'portfolio snapshot')}, "
                f"{_count(len(fills), 'fill')}); a backtest starts from empty books: delete "
                "that state or point [persistence] at a new location to start over, or "
                "resume from it (tradeloom backtest --resume, resume=True)"
            )
        self._resumed_from_state = bool(snapshots or fills)
        self._stored_until = max(
            itertools.chain((s.ts for s in snapshots.values()), (f.ts for f in fills)),
            default=None,
        )
        if self.mode == "backtest" and self.resume and not self._resumed_from_state:
            self.logger.warning(
                "resume: the %r persistence holds no state to resume from (%s), so the "
                "backtest starts from empty books",
                self.settings.persistence.name,
                "it keeps nothing between runs"
                if self.settings.persistence.name == "memory"
                else "nothing was saved there yet",
            )
        if self._resumed_from_state:
            self._warn_orphaned_portfolios(snapshots, fills)

    def _warn_orphaned_portfolios(self, snapshots: Any, fills: Any) -> None:
        """Stored portfolios no strategy of this run trades are carried along (valued, and in
        the equity): say so, as a renamed strategy id is the usual cause."""
        stored = set(snapshots) | {fill.strategy_id for fill in fills}
        running = self._portfolio_ids()
        orphaned = sorted(stored - set(running))
        if not orphaned or not running:
            return
        self.logger.warning(
            "the stored state holds portfolio(s) %s that no strategy of this run trades: they "
            "are carried along as they are and count in the equity (portfolios are strategy "
            "ids: did one change? this run's: %s)",
            ", ".join(map(repr, orphaned)),
            ", ".join(map(repr, running)),
        )

    def _warn_unknown_portfolios(self, portfolio_ids: list[str]) -> None:
        # Keys are strategy ids, case and all: one that matches none is most likely a typo,
        # and that portfolio would silently start with the default cash.
        for key in self.settings.portfolio.starting_cash_by_portfolio:
            if key in portfolio_ids:
                continue
            close = closest_name(key, portfolio_ids)
            hint = f" (did you mean {close!r}?)" if close else ""
            self.logger.warning(
                "portfolio.starting_cash_by_portfolio names %r, which is not a portfolio of "
                "this run%s; portfolios are strategy ids: %s",
                key,
                hint,
                ", ".join(portfolio_ids) or "none",
            )

    def _new_book(self) -> PortfolioBook:
        cash: dict[str, Decimal] = dict(self.settings.portfolio.starting_cash_by_portfolio)
        cash["*"] = self.settings.portfolio.starting_cash
        return PortfolioBook(cash)

    def _journals_rejections(self) -> bool:
        """Whether rejections are journaled: across processes (in one none is read again),
        with a back end that keeps them (the optional ``record_rejections``)."""
        persistence = self.persistence
        return (
            not self.transport.synchronous
            and persistence is not None
            and getattr(persistence, "record_rejections", None) is not None
            and getattr(persistence, "load_rejections", None) is not None
        )

    async def _load_rejections(self, persistence: Persistence) -> tuple[list[Rejection], int]:
        """The journaled rejections, for a risk or execution role across processes (see
        :meth:`_journals_rejections`), none otherwise; and how many the journal holds. With
        ``count_rejections``, only the newest the stages remember are read."""
        if not self._journals_rejections() or not self.roles & {"risk", "execution"}:
            return [], 0
        load = persistence.load_rejections  # type: ignore[attr-defined]
        count = getattr(persistence, "count_rejections", None)
        try:
            skipped = 0
            if count is not None:
                journaled = await self._call_persistence(count)
                if type(journaled) is not int or journaled < 0:
                    raise PersistenceError(
                        f"persistence {self.settings.persistence.name!r}: count_rejections() "
                        f"returned {journaled!r}, not a number of rejections"
                    )
                skipped = max(0, journaled - OUTCOMES_REMEMBERED)
            rejections = list(await self._call_persistence(load, skipped))
        except PersistenceError as exc:
            self._say_rejections_unread(exc)
            return [], 0
        return rejections, skipped + len(rejections)

    def _say_rejections_unread(self, exc: PersistenceError) -> None:
        # Rejections are no state: without them the run goes on as it did before they were
        # journaled (a signal read again after a crash may be decided again).
        self.logger.warning(
            "%s; the rejections journal is not read, so a signal or order read again after a "
            "crash may be decided again",
            exc,
        )

    def _catch_up_when_assigned(
        self,
        stage: StrategyStage | RiskStage | ExecutionStage,
        journaled: int,
        rejections_journaled: int | None = None,
    ) -> None:
        """Across processes a role's book is its own view of the fills: when the role is
        assigned input (it started, or took over a leaving member's partitions) it applies
        what the journal holds and it lacks; the transport then reads the fills the journal
        does not hold yet again (see the Redpanda transport's catch-up).

        ``journaled`` is how many fills the journal held when the book was loaded. A back end
        with ``load_fills_after`` gives only the fills journaled since; another one is read
        whole each time. With ``rejections_journaled`` (how many rejections were loaded), the
        rejections journaled since are remembered too (``stage.remember_rejected``)."""
        persistence = self.persistence
        if self.transport.synchronous or persistence is None:
            return
        load_after = getattr(persistence, "load_fills_after", None)
        seen = journaled
        load_rejections = getattr(persistence, "load_rejections", None)
        remember_rejected = getattr(stage, "remember_rejected", None)
        rejections_seen = rejections_journaled
        if not self._journals_rejections() or remember_rejected is None:
            rejections_seen = None

        async def read(method: Callable[..., Any], *args: Any) -> list[Any]:
            load = partial(method, *args)
            # A synchronous back end reads in a thread: the consumers' heartbeats go on.
            if inspect.iscoroutinefunction(method):
                return list(await method(*args))
            return list(await anyio.to_thread.run_sync(load))

        async def catch_up() -> None:
            nonlocal seen, rejections_seen
            if rejections_seen is not None:
                assert load_rejections is not None and remember_rejected is not None
                try:
                    rejections = await read(load_rejections, rejections_seen)
                except PersistenceError as exc:
                    self._say_rejections_unread(exc)
                else:
                    remember_rejected(rejections)
                    rejections_seen += len(rejections)
            if load_after is None:
                fills = await read(persistence.load_fills)
            else:
                fills = await read(load_after, seen)
            caught_up = stage.catch_up(fills)
            if load_after is not None:  # not when a strategy raised: read again next time
                seen += len(fills)
            if caught_up:
                self.logger.info(
                    "role %s: applied %d fill(s) from the journal that other processes applied",
                    stage.role,
                    caught_up,
                )

        self.transport.add_assignment_hook(stage.role, catch_up)

    def _declare_waiting(self, stage: RiskStage | ExecutionStage, topic: str) -> None:
        """Tell a transport that can use it which events of ``topic`` the stage keeps waiting
        (``Transport.add_held_events``) and how it hands them over at a rebalance
        (``Transport.add_revocation_hook``)."""
        add_held_events = getattr(self.transport, "add_held_events", None)
        if add_held_events is not None:
            add_held_events(stage.role, (topic,), stage.waiting_ids)
        add_revocation_hook = getattr(self.transport, "add_revocation_hook", None)
        if add_revocation_hook is not None:
            add_revocation_hook(stage.role, stage.hand_over)

    async def _restored_book(self, snapshots: Any, fills: Any) -> PortfolioBook:
        book = self._new_book()
        try:
            book.restore(snapshots, fills)
        except CorruptStateError as exc:  # the stored events do not fit together: say where
            raise CorruptStateError(f"{self._stored_state_name()}: {exc}") from None
        return book

    def _stored_state_name(self) -> str:
        """The configured persistence, with its path when it has one: "the 'sqlite'
        persistence at state.sqlite"."""
        configured = self.settings.persistence
        path = configured.params.get("path")
        where = f" at {path}" if isinstance(path, str | os.PathLike) else ""
        return f"the {configured.name!r} persistence{where}"

    async def _load_stored_state(
        self, persistence: Persistence
    ) -> tuple[Any, Any, Mapping[str, str]]:
        """Open the persistence and read its snapshots, fills and (in the process that writes
        the state, from a back end that keeps any) metadata."""
        call = self._call_persistence
        await call(persistence.open)
        writes = "portfolio" in self.roles
        if writes:
            # The one process that writes the state: hold it before reading it, so that a
            # second writer on the same store fails now, not at its first write.
            claim = getattr(persistence, "claim_for_writing", None)
            if claim is not None:
                await call(claim)
        snapshots = await call(persistence.load_snapshots)
        fills = await call(persistence.load_fills)
        load_metadata = getattr(persistence, "load_metadata", None)
        metadata: Mapping[str, str] = {}
        if writes and load_metadata is not None:
            try:
                metadata = await call(load_metadata)
            except PersistenceError as exc:  # it only informs: say so, and go on
                self.logger.warning("%s; the stored settings are not compared", exc)
        return snapshots, fills, metadata

    async def _call_persistence(self, method: Callable[..., Any], *args: Any) -> Any:
        """``method(*args)`` of the persistence, awaited if need be. Anything but a
        :class:`~tradeloom.errors.TradeloomError` it raises is a
        :class:`~tradeloom.errors.PersistenceError` naming the back end and the method."""
        try:
            return await maybe_await(method(*args))
        except TradeloomError:
            raise
        except Exception as exc:
            raise PersistenceError(
                f"persistence {self.settings.persistence.name!r} raised in "
                f"{getattr(method, '__name__', 'a method')}(): {type(exc).__name__}: {exc}"
            ) from exc

    def _record_settings(self, persistence: Persistence, metadata: Mapping[str, str]) -> None:
        """Say which settings changed since the run that saved the state resumed here, and
        have this run's record kept just before the portfolio stage first adds to the state
        (see :mod:`tradeloom.runtime.settings_record`); a run that adds nothing leaves the
        record as it was."""
        save_metadata = getattr(persistence, "save_metadata", None)
        if "portfolio" not in self.roles or save_metadata is None:
            return
        # Once this run's write has stamped the state: not before (a write that fails leaves
        # the state, and the clock that stamped it, as they were).
        self._clock_record = (
            "saving the state's clock",
            save_metadata,
            {CLOCK_KEY: self._clock_kind},
        )
        try:
            stored = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
            if self._resumed_from_state and isinstance(stored, str):
                changed = changed_settings(stored, self.settings)
                if changed is not None:
                    self._say_changed_settings(*changed)
            record = settings_record(self.settings)
        except Exception as exc:  # it only informs: never fails a run
            self.logger.warning(
                "the settings could not be recorded with the state: %s: %s", type(exc).__name__, exc
            )
            return
        self._settings_record = (
            "saving the settings record",
            save_metadata,
            {METADATA_KEY: record},
        )

    @property
    def _clock_kind(self) -> str:
        return "simulated" if isinstance(self.clock, SimulatedClock) else "wall"

    def _judge_stored_clock(self, metadata: Mapping[str, str]) -> None:
        """Keep the kind of clock that stamped the stored state (see ``CLOCK_KEY``); a backtest
        refuses to resume from wall-clock state, whose latest time would skip all its data."""
        stored = metadata.get(CLOCK_KEY) if isinstance(metadata, Mapping) else None
        self._stored_clock = stored if stored in ("simulated", "wall") else None
        if self.mode == "backtest" and self._resumed_from_state and self._stored_clock == "wall":
            assert self._stored_until is not None
            raise ConfigError(
                f"{self._stored_state_name()} holds state stamped with the wall clock (a live "
                f"run's, or a backtest's on the wall clock; latest {self._stored_until.isoformat()}"
                "), not with the data's times, so a backtest cannot resume from it: it would "
                "skip all of the data; continue a live run's state with tradeloom run, or "
                "backtest from a new state file"
            )

    def _say_changed_settings(self, shaping: list[str], feed: list[str]) -> None:
        if shaping:
            self.logger.warning(
                "resume: the stored state was saved by a run with other settings (changed: "
                "%s); the books carry on from that state, so the results mix both",
                ", ".join(shaping),
            )
        if feed:
            self.logger.info(
                "resume: the feed's settings changed since the state was saved (%s)",
                ", ".join(feed),
            )

    async def _assemble_stages(self) -> None:
        self._event_observer_set = self._event_observer()
        services = StageServices(
            transport=self.transport,
            ids=self.ids,
            clock=self.clock,
            status=self.status,
            logger=self.logger,
            event_observer=self._event_observer_set,
        )
        snapshots: Any = {}
        fills: Any = []
        rejections: list[Rejection] = []
        rejections_journaled = 0
        metadata: Mapping[str, str] = {}
        if self.persistence is not None:
            snapshots, fills, metadata = await self._load_stored_state(self.persistence)
            rejections, rejections_journaled = await self._load_rejections(self.persistence)
            self._judge_stored_state(snapshots, fills)
            self._judge_stored_clock(metadata)
            self._record_settings(self.persistence, metadata)
            if self.mode == "backtest" and (snapshots or fills):
                # The stored state already holds every event up to its latest (simulated)
                # time: replaying those again would count their fills twice.
                self.result.resumed_after = self._stored_until
                self._resume = ResumePoint(self.result, self.logger)
            advance_ids_past(
                self.ids,
                itertools.chain(
                    (f.event_id for f in fills),
                    (f.order_id for f in fills),
                    (s.event_id for s in snapshots.values()),
                ),
            )
        # Subscription order matters on an in-process transport: the executor sees a price
        # before the strategies do, so an order placed on this price fills on the next one.
        if "execution" in self.roles and self.executor is not None:
            execution_stage = ExecutionStage(services, self.executor)
            self.stages.append(execution_stage)
            if not self.transport.synchronous:
                # Orders read again after a crash (in one process none are): those the journal
                # shows filled, now and whenever the role takes on more input, are skipped.
                execution_stage.remember_filled(fills)
                execution_stage.remember_rejected(rejections)
                self._catch_up_when_assigned(execution_stage, len(fills), rejections_journaled)
            # Orders waiting for a price keep their records uncommitted (a process killed
            # meanwhile reads them again), and go with their instruments' input.
            self._declare_waiting(execution_stage, Topics.ORDERS)
        if "portfolio" in self.roles and self.persistence is not None:
            portfolio_book = await self._restored_book(snapshots, fills)
            for portfolio_id in self._portfolio_ids():
                portfolio_book.portfolio(portfolio_id)  # equity counts from the first event
            self._warn_unknown_portfolios(sorted(portfolio_book.portfolios))
            # The return is measured over the portfolios the final equity sums: every one in
            # this book, restored ones too (a resumed run may not run all their strategies).
            self.result.starting_equity = portfolio_book.equity()
            self.result.equity_curve.start_from(self.result.starting_equity)
            self._portfolios_at_start = frozenset(portfolio_book.portfolios)
            self.portfolio_stage = PortfolioStage(
                services,
                portfolio_book,
                self.persistence,
                self.result,
                snapshot_interval_seconds=self.settings.portfolio.snapshot_interval_seconds,
                record_equity=True,
                blocking_io_in_thread=self.mode == "live",
                journal_rejections=self._journals_rejections(),
                save_revalued=self.mode == "live",
            )
            self.portfolio_stage.before_first_write = self._settings_record
            self.portfolio_stage.after_first_write = self._clock_record
            self.stages.append(self.portfolio_stage)
        if "risk" in self.roles:
            risk_book = await self._restored_book(snapshots, fills)
            risk_stage = RiskStage(services, self.validators, risk_book, self.settings.pending)
            self.risk_stage = risk_stage
            risk_stage.remember_filled(fills)
            risk_stage.remember_rejected(rejections)
            self.stages.append(risk_stage)
            # Signals waiting for a first price keep their records uncommitted (a process
            # killed meanwhile reads them again), and stay with their instruments' input.
            self._declare_waiting(risk_stage, Topics.SIGNALS)
            self._catch_up_when_assigned(risk_stage, len(fills), rejections_journaled)
        if "strategy" in self.roles:
            strategy_book = await self._restored_book(snapshots, fills)
            strategy_stage = StrategyStage(
                services,
                {sid: (s, self._strategy_instruments[sid]) for sid, s in self.strategies.items()},
                strategy_book,
            )
            self.stages.append(strategy_stage)
            self.strategy_stage = strategy_stage
            self._catch_up_when_assigned(strategy_stage, len(fills))
            if self._resume is not None and self.feed is not None:
                after = self._resume.after
                self._resume.warm_up = WarmUp(
                    strategy_stage,
                    self.clock,
                    self._start_warm_up,
                    lambda: self._stop_requested,
                    self.logger,
                    last_time=after,
                    filled_at_last_time=[fill for fill in fills if fill.ts == after],
                    price=self._price_after_warm_up,
                    in_flight=read_in_flight(metadata, after),
                    place_again=self.risk_stage.place_again if self.risk_stage else None,
                )
            if self.portfolio_stage is None:
                self.result.starting_equity = sum(
                    (
                        strategy_book.portfolio(sid).equity(strategy_book.marks)
                        for sid in self.strategies
                    ),
                    Decimal(0),
                )
        if self._resume is not None and self._resume.warm_up is None:
            # The run goes on from there: what it saves is stamped no earlier, also when
            # no event comes after (or the next resume would replay everything again). With
            # strategies to warm up, the clock gets there with the events (see WarmUp).
            self.clock.advance(self._resume.after)
        self.transport.bind(
            codec=self.codec,
            on_dead_letter=self._on_dead_letter,
            logger=self.logger.getChild("transport"),
            clock=self.clock,
            settings=self.settings,
            status=self.status,
        )
        for stage in self.stages:
            handler = stage.handler()
            self._stage_handlers.append((handler, stage))
            self.transport.subscribe(stage.role, stage.topics, handler)
            if stage.decided_again:
                self.transport.add_decided_again(stage.role, stage.decided_again)
        for topic in Topics.ALL:
            route = self.direct_route(topic)
            if topic != Topics.MARKET and route is not None and route.targets:
                for stage in self.stages:
                    stage.direct_routes[topic] = route
        if self.portfolio_stage is not None:
            # Consumed fills are acknowledged only once they are in the journal.
            self.transport.add_commit_barrier("portfolio", self.portfolio_stage.flush_journal)

    # -- running -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking input, finish what is in flight, save, close (drain-then-stop)."""
        self._stop_requested = True
        self.transport.stop_consuming()
        if self._stop_event is not None:
            self._stop_event.set()
        if self._feed_wait is not None and self._waiting_for_feed:
            self._feed_wait.cancel()  # a live feed waiting for input stops waiting

    def _give_up(self, error: Exception) -> None:
        """A transport or feed failed for good: drain and stop cleanly, then raise ``error``
        from :meth:`run`."""
        if self._failure is None:
            self._failure = error
            self.result.failed = _described(error)
        if isinstance(error, ReconnectExhausted):
            self.status.reconnect_exhausted = str(error)
        self.logger.error("%s; draining, then stopping", error)
        self.stop()

    async def run(self) -> RunResult:
        started = time.perf_counter()
        self._stop_event = anyio.Event()
        if self._stop_requested:
            self._stop_event.set()
        self.status.started_at = WallClock().now()
        try:
            await self._assemble_stages()
            await self.transport.start()
            await self._open_replay_position()
            attach = getattr(self.feed, "attach_transport", None)
            if attach is not None:
                attach(self.transport)  # a feed that acknowledges input once it is delivered
            await call_hook_and_await(self.manager.hook.tradeloom_pipeline_started, pipeline=self)
            self._open_backtest_feed()
            if not self._stages_start_at_first_event:
                self._start_stages()
            # A backtest keeps everything built so far (modules, plugins, stages) to its end:
            # frozen, the collector's full collections during the run skip it (about 3% of a
            # million-tick run). Not when the application froze objects itself: unfreezing
            # afterwards would undo that.
            with run_collector(freeze=self.mode == "backtest") as frozen:
                self._freezing = frozen
                try:
                    await self._run_tasks()
                except BaseExceptionGroup as group:
                    sole = sole_exception(group)
                    if sole is not None:
                        # The one real error, not a task-group wrapper, with its own cause (a
                        # strategy's exception, say, and where in the strategy it was raised).
                        raise sole from sole.__cause__
                    raise
        except BaseException as exc:
            await self._stopped_early()
            # Before the plugins' tradeloom_pipeline_stopped, which see the result.
            interrupted, failure = how_it_ended(exc, anyio.get_cancelled_exc_class())
            if interrupted:
                self.result.interrupted = self.where_it_stopped()
            if failure is not None:
                self.result.failed = _described(failure)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()
            self.result.wall_seconds = time.perf_counter() - started
            # Also after an error: plugins release what they started (servers, files).
            # The run is over and its state saved: a plugin failing here is logged, every
            # plugin still gets its call (to release what it started), the result is kept.
            with anyio.CancelScope(shield=True):
                await call_hook_and_await(
                    self.manager.hook.tradeloom_pipeline_stopped,
                    report=self._log_plugin_failure,
                    pipeline=self,
                    result=self.result,
                )
        if self._failure is not None:
            raise self._failure
        return self.result

    async def _run_tasks(self) -> None:
        assert self._stop_event is not None
        async with anyio.create_task_group() as tasks:
            consuming_done = anyio.Event()
            if self.transport.synchronous:
                consuming_done.set()
            else:
                tasks.start_soon(self._consume, consuming_done)
            if self.mode == "live":
                tasks.start_soon(self._ticker)
                tasks.start_soon(self._heartbeat)
            if self._replay_position is not None:
                tasks.start_soon(self._replay_position.keep, self._events_taken)
            if self.feed is not None:
                try:
                    await self._pump(self.feed)
                    self._feed_ended = not self._stop_requested
                except ReconnectExhausted as exc:
                    # The run ends cleanly, not in _stopped_early: count what was delivered.
                    self._count_market(self.status.market_events)
                    self._give_up(exc)
            if self._stages_start_at_first_event:  # an async feed that gave no event
                self._start_stages()
            # Live on a broker, the end of a finite feed ends only a process that runs nothing
            # but the feed: stages keep consuming what other processes publish until stop().
            if self.feed is None or (
                self.mode == "live" and not self.transport.synchronous and self.stages
            ):
                await self._stop_event.wait()
            await self._drain(consuming_done)
            tasks.cancel_scope.cancel()

    async def _consume(self, done: anyio.Event) -> None:
        try:
            await self.transport.run()
        except Exception as exc:  # reported by run() after a clean drain
            self._give_up(exc)
        finally:
            done.set()

    def _feed_context(self) -> FeedContext:
        context = FeedContext(
            ids=self.ids,
            clock=self.clock,
            reconnect=self.settings.reconnect,
            logger=self.logger.getChild("feed"),
            report_bad_input=self.transport.dead_letter,
            codec=self.codec,
            report_lag=self._show_feed_lag,
            consumer_group=self._feed_group(),
            reconnecting=self.status.reconnecting,
        )
        keeper = self._replay_position
        if keeper is not None:
            # Ids numbered per event, and the events an earlier run published left out (see
            # tradeloom.runtime.replay_position).
            context.ids = keeper.ids()
            context.skip_events = keeper.skip_events
        return context

    async def _open_replay_position(self) -> None:
        """A live run publishing a replay through a transport that keeps positions: read
        where an earlier run got to."""
        feed = self.feed
        if (
            self.mode != "live"
            or feed is None
            or not getattr(feed, "replays_from_start", False)
            or not self.transport.keeps_replay_positions
        ):
            return
        keeper = ReplayPositionKeeper(
            self.transport, feed_key(feed, self._feed_settings), self.ids, self.logger
        )
        await keeper.load(from_start=self.replay_from_start)
        self._replay_position = keeper

    def _events_taken(self) -> int:
        """The events taken from the feed so far in this run (published, or refused)."""
        if self._refusing is not None:
            return self._refusing.taken
        return self._async_events_taken

    def _feed_group(self) -> str | None:
        group_id = getattr(self.transport, "group_id", None)  # a transport of its own may lack it
        group: Any = group_id("feed") if callable(group_id) else None
        return group if isinstance(group, str) and group else None

    def _show_feed_lag(self, lags: Mapping[str, int]) -> None:
        shown = self.status.consumer_lag
        now = {f"feed/{topic}": int(behind) for topic, behind in lags.items()}
        for gone in [key for key in shown if key.startswith("feed/") and key not in now]:
            del shown[gone]
        shown.update(now)

    def _open_source(self, feed: Feed, given: Iterable[MarketEvent]) -> Iterator[MarketEvent]:
        """A plain (not async) feed's events, after what a resumed run skips, with its first
        event read and checked."""
        try:
            source = self._feed_iterator = iter(given)  # a feed may return any iterable
        except TradeloomError:
            raise
        except Exception as exc:
            raise self._feed_failed(exc) from exc
        if self._resume is not None and self._resume.warm_up is not None:
            # Read by the pump, which warms the strategies up on what the stored state holds
            # in blocks, with the pauses of a run between them: the stages start there.
            self._warming_up = True
            self._stages_start_at_first_event = True
            return source
        if self._resume is not None:
            source = self._resume.events(source)
        if self._stop_requested:
            return source  # stopped in on_start (of a resumed backtest): nothing is read
        try:
            first = next(source, None)
        except TradeloomError:
            raise
        except Exception as exc:
            raise self._feed_failed(exc) from exc
        if first is None:
            return source
        self._take_first(first, feed)
        return itertools.chain((first,), source)

    def _take_first(self, first: MarketEvent, feed: Feed) -> None:
        """The first market event the run takes: checked as a feed's first event is, and the
        run's first times are its."""
        _check_first_event(first, feed)
        self._warn_if_before_stored_state(first)  # a plain feed is a replay
        self.result.first_event_time = first.ts
        self.result.first_event_start = _start_of(first)

    def _open_backtest_feed(self) -> None:
        """Open a backtest's feed and read its first event before the stages start, so the
        simulated clock shows the data's first time in ``on_start``. An async feed is read
        only by the pump, in the task and the cancel scope it reads every event in (a feed may
        hold a cancel scope or a task group of its own across its yields): there the stages
        start at its first event."""
        if self.mode != "backtest" or self.feed is None:
            return
        source = self._events_of(self.feed)
        if hasattr(source, "__aiter__"):
            self._opened_async_source = source
            self._stages_start_at_first_event = True
            return
        try:
            self._opened_source = self._open_source(self.feed, source)
        except ReconnectExhausted as exc:
            # Given up on at the first read: raised where the pump would have met it, so
            # the run drains and stops as it does for a feed that gives up later.
            self._opened_failure = exc
            return
        first_time = self.result.first_event_time
        if first_time is not None:
            self.clock.advance(first_time)

    def _start_stages(self) -> None:
        self._stages_start_at_first_event = False
        if self._stages_started:
            return
        self._stages_started = True
        for stage in self.stages:
            stage.start()

    async def _close_events(self, events: Any) -> None:
        close = _closer(events)
        if close is None:
            return
        try:
            await maybe_await(close())
        except Exception as exc:  # the error that ended the run, if any, is the one raised
            self.logger.error(
                "errors while closing: feed's events: %s: %s", type(exc).__name__, exc
            )
        except BaseExceptionGroup as group:
            _, rest = group.split(GeneratorExit)
            if rest is not None:
                raise
            # A task group held open across a yield: anyio cannot close it while the
            # generator waits there (closed early: a stop, an error in a stage).
            self.logger.error(
                "errors while closing: feed's events: its async generator holds a task group "
                "across a yield, which cannot be closed before it ends; see Writing a feed"
            )

    def _first_async_event(self, event: MarketEvent, feed: Feed) -> bool:
        """Check an async feed's first event; in a backtest, start the stages at its time (see
        ``_open_backtest_feed``). True when the run was stopped before it (in ``on_start``)."""
        _check_first_event(event, feed)
        if getattr(feed, "replays_from_start", False):
            self._warn_if_before_stored_state(event)
        if self._stages_start_at_first_event:
            self._start_stages_at(event)
        return self._stop_requested

    def _warn_if_before_stored_state(self, first: MarketEvent) -> None:
        """A live run of a replay (a plain feed, or one that says it ``replays_from_start``)
        whose first market event is older than the state it carries on from (a file replayed
        again on a live run's state, stamped with the wall clock, or on a backtest's): the
        feed's events trade again on top of books that are past them. (Live state has
        wall-clock times, so there is no data time to resume after.) Not of a live source:
        its first tick may well be older than the last checkpoint (the last quote of a
        closed market, a tick a broker hands out again after a crash)."""
        stored_until = self._stored_until
        if self.mode != "live" or stored_until is None or first.ts >= stored_until:
            return
        if self._replay_position is not None and self._replay_position.skip_events:
            return  # it goes on after what an earlier run published
        advice = {
            # A live run's state (or a wall-clock backtest's): no backtest can resume it.
            "wall": "start from a new state file",
            "simulated": "to continue that backtest after its stored state, backtest with "
            "--resume; or start from a new state file",
        }.get(
            self._stored_clock or "",
            "to continue after the stored state, backtest with --resume (a backtest's state), "
            "or start from a new state file",
        )
        self.logger.warning(
            "this live run carries on from stored state that reaches %s, later than its first "
            "market event (%s): a feed replayed from the start trades those events again on "
            "top of that state; %s",
            stored_until.isoformat(),
            first.ts.isoformat(),
            advice,
        )

    def _start_stages_at(self, event: MarketEvent) -> None:
        self.clock.advance(event.ts)
        self._start_stages()

    async def _warm_up(self, feed: Feed, source: Iterator[MarketEvent]) -> Iterator[MarketEvent]:
        """A resumed backtest: hand the strategies the events the stored state holds (see
        WarmUp), a block at a time with the pauses of a run between blocks (Ctrl-C, SIGTERM,
        checkpoints); return the events after the stored state, the first one read."""
        resume = self._resume
        assert resume is not None and resume.warm_up is not None
        warm_up = resume.warm_up.event
        already_stored = resume.already_stored
        while True:
            try:
                block = list(itertools.islice(source, _YIELD_EVERY))
                for index, event in enumerate(block):
                    if not already_stored(event):
                        return self._after_warm_up(feed, itertools.chain(block[index:], source))
                    warm_up(event)
            except TradeloomError:
                raise
            except Exception as exc:
                raise self._feed_failed(exc) from exc
            if len(block) < _YIELD_EVERY:
                resume.end_warm_up(goes_on=False)
                resume.log_end(passed=0)
                return iter(())
            await self._yield_point(0)
            if self._stop_requested:
                return iter(())

    def _after_warm_up(self, feed: Feed, source: Iterator[MarketEvent]) -> Iterator[MarketEvent]:
        """The first event after the stored state begins the run as a first event does."""
        assert self._resume is not None
        self._resume.end_warm_up()
        first = next(source)
        self._take_first(first, feed)
        if self._stages_start_at_first_event:  # nothing to warm up on: they start here
            self._start_stages_at(first)
        return self._resume.events(itertools.chain((first,), source))

    def _price_after_warm_up(self, event: MarketEvent) -> None:
        """The latest price of an instrument the warm-up saw, to the stages that price orders
        (as the run that stored the state had it): orders carried over are judged on it."""
        for stage in self.stages:
            if isinstance(stage, RiskStage | ExecutionStage):
                stage.handler()(Topics.MARKET, event)  # its errors as the stage's, not the feed's

    def _start_warm_up(self, event: MarketEvent) -> None:
        """The first event a resumed backtest skips (see WarmUp): checked as a first event, and
        the stages started at its time, as they were in the run that stored the state."""
        assert self.feed is not None
        _check_first_event(event, self.feed)
        self._start_stages_at(event)

    async def _pump_async(self, feed: Feed, source: AsyncIterable[MarketEvent]) -> int:
        """Deliver an async feed's events, one at a time; return how many."""
        publish = self.transport.publish
        advance = self.clock.advance
        last_times = self.status.last_market_time
        market = Topics.MARKET
        result = self.result
        count = 0
        # A feed may return any async iterable.
        events = self._feed_iterator = aiter(source)
        async_source: AsyncIterator[MarketEvent] = events
        if self._resume is not None:
            async_source = self._resume.events_async(events)
        # A live feed reading a broker may hand out an event again (after a crash or a
        # rebalance, from its last commit): it is recognised by its id, as on transports.
        window = self.settings.pipeline.dedupe_window
        seen = RecentIds(window) if window else None
        in_order = self._checks_time_order
        pause_every = _YIELD_EVERY if self.mode == "backtest" else _LIVE_YIELD_EVERY
        ahead = self._ahead_limit()
        try:
            with anyio.CancelScope() as self._feed_wait:
                if self._stop_requested:
                    self._feed_wait.cancel()
                try:
                    while True:
                        # Only a wait for the feed is cancelled by stop(): a stop made while
                        # an event is delivered ends the loop below, so the feed closes
                        # outside a cancelled scope (its cleanup may await).
                        self._waiting_for_feed = True
                        try:
                            event = await anext(async_source)
                        except StopAsyncIteration:
                            self._between_times = True
                            break
                        except TradeloomError:
                            raise
                        except Exception as exc:
                            raise self._feed_failed(exc) from exc
                        finally:
                            self._waiting_for_feed = False
                        if not count and self._first_async_event(event, feed):
                            break  # stopped in on_start: the event is not taken
                        self._async_events_taken += 1
                        try:
                            if seen is not None and seen.seen(event.event_id):
                                self.status.duplicates_ignored += 1
                                continue
                            ts = event.ts
                            if in_order and self.clock.passed(ts):
                                raise self._out_of_order(event, self.clock.now())
                            if ahead is not None and self._too_far_ahead(feed, event, ahead):
                                continue
                            advance(ts)
                            last_times[event.instrument] = ts
                        except (AttributeError, TypeError) as exc:  # not a market event
                            raise self._feed_failed(exc) from exc
                        self.status.last_market_wall_time = WallClock().now()
                        # Counted before it is published, as a block delivery counts it: an
                        # event whose delivery fails is counted with the time it recorded.
                        count += 1
                        self.status.market_events = count
                        self.status.last_market_event = event
                        earliest = result.first_event_time
                        if earliest is None or event.ts < earliest:  # live times jump back
                            result.first_event_time = event.ts
                            result.first_event_start = _start_of(event)
                        if self._event_observer_set is not None:
                            self._event_observer_set("feed", "out", event)
                        publish(market, event, event.instrument)
                        if self._stop_requested:
                            break
                        if not count % pause_every:
                            # A feed may never await (a list behind async def, a paced replay
                            # behind its schedule): pause as the plain path does, for a stop,
                            # Ctrl-C, progress, checkpoints and the other tasks of a live run.
                            await self._yield_point(count)
                            if self._stop_requested:
                                break
                finally:
                    # Closed by the task that read them, before it leaves this scope: a
                    # feed's own cancel scopes and task groups, open while it waits at a
                    # yield, must be left first (a stop breaks off between two events).
                    try:
                        # A stop that came while the pump waited cancelled this scope: the
                        # feed's own scopes were left with the cancelled wait (a generator
                        # ends there), so a shield is safe, and lets its cleanup await.
                        # No new scope otherwise: a generator stopped between two
                        # events is still inside its own, which must be left first.
                        with (
                            anyio.move_on_after(_FEED_CLOSE_SECONDS, shield=True)
                            if self._feed_wait.cancel_called
                            else contextlib.nullcontext()
                        ):
                            for opened_events in dict.fromkeys((async_source, events)):
                                await self._close_events(opened_events)
                    finally:
                        self._feed_iterator = None  # closed: not again by _close
        finally:
            self._feed_wait = None
        return count

    async def _pump(self, feed: Feed) -> None:
        if self._opened_failure is not None:
            raise self._opened_failure
        opened = self._opened_source
        source = self._opened_async_source if opened is None else opened
        self._opened_source = self._opened_async_source = None
        if source is None:
            source = self._events_of(feed)
        if hasattr(source, "__aiter__"):
            self._count_market(await self._pump_async(feed, cast(Any, source)))
            return
        count = 0
        ahead = self._ahead_limit()
        if ahead is not None:
            source = self._refusing = self._refusing_too_far_ahead(feed, source, ahead)
        if opened is None:
            source = self._open_source(feed, source)
        if self._warming_up and not self._stop_requested:
            source = await self._warm_up(feed, source)
        if self._stop_requested:
            source = iter(())  # stopped before it began: not even a first block
        read_ahead: list[MarketEvent] = []  # the first event of the next block
        block_size = _YIELD_EVERY if self.mode == "backtest" else _LIVE_YIELD_EVERY
        while True:
            block = itertools.islice(
                itertools.chain(read_ahead, source) if read_ahead else source, block_size
            )
            direct = self._direct_market_route()
            self._between_times = False
            try:
                delivered = self._deliver(block, direct) if direct else self._publish(block)
                count += delivered
                if delivered < block_size:
                    break
                if self.mode == "backtest":
                    # End the block with the rest of its last timestamp's events: a stop or
                    # an interruption then falls between two times, and a resumed backtest,
                    # which skips what is at or before the stored time, skips exactly what
                    # was processed (the bars of several instruments share a time).
                    rest, read_ahead = rest_of_time(source, self.clock.now())
                    if rest:
                        count += self._deliver(rest, direct) if direct else self._publish(rest)
            except TradeloomError:
                raise
            except Exception as exc:
                if exc is self._downstream_failure:
                    raise
                # The stages' failures are TradeloomErrors: anything else came from reading
                # the feed, or from what it gave.
                raise self._feed_failed(exc) from exc
            self._between_times = self.mode == "backtest"  # a block ends with its last time
            await self._yield_point(count)
            if self._stop_requested:
                break
        self._between_times = True
        self._count_market(count)

    def _ahead_limit(self) -> timedelta | None:
        """How far ahead of the wall clock a live run's market event may be stamped (None in a
        backtest, whose data time is not the wall clock's)."""
        if self.mode != "live":
            return None
        return timedelta(seconds=self.settings.pipeline.max_ahead_seconds)

    def _too_far_ahead(self, feed: Feed, event: MarketEvent, ahead: timedelta) -> bool:
        """Whether ``event`` is stamped more than ``ahead`` after the wall clock; if so it is
        reported as bad input. Taken in, one such time would hold every order that waits for
        a later price (``fill_at = "next"``) until then."""
        now = WallClock().now()
        if event.ts <= now + ahead:
            return False
        seconds = (event.ts - now).total_seconds()
        self._on_dead_letter(
            DeadLetter(
                source=_source_name(feed),
                reason=f"{event.type} for {event.instrument} stamped {event.ts.isoformat()} is "
                f"{seconds:,.0f} s ahead of the wall clock ([pipeline] max_ahead_seconds = "
                f"{ahead.total_seconds():g}): a clock or time zone off, or a corrupt time",
                error_type="time_ahead",
                raw=event.model_dump_json().encode(),
                ts=now,
                location=f"event {event.event_id}",
            )
        )
        return True

    def _refusing_too_far_ahead(
        self, feed: Feed, events: Iterable[MarketEvent], ahead: timedelta
    ) -> _Refusing:
        """A live plain feed's ``events`` without those stamped too far ahead (see
        :meth:`_too_far_ahead`)."""
        return _Refusing(iter(events), lambda event: self._too_far_ahead(feed, event, ahead))

    def _direct_market_route(self) -> list[tuple[Stage, Callable[[Any], None]]] | None:
        if self.status.stage_observer is not None:
            return None
        route = self.direct_route(Topics.MARKET)
        return route.targets if route is not None and route.targets else None

    def direct_route(self, topic: str) -> DirectRoute | None:
        """The stages' own methods for ``topic``, in delivery order, when the transport would
        only call their handlers in this process and no plugin observes every event; else None.
        Calling them is what publishing would do, minus a layer of calls per stage and event.
        (A stage observer, which may come and go during a run, is checked per delivery; the
        market route is made again for every block of events.)"""
        if self._event_observer_set is not None:
            return None
        subscribers = self.transport.local_subscribers(topic)
        if subscribers is None:
            return None
        targets = []
        for subscriber in subscribers:
            stage = next((s for h, s in self._stage_handlers if h is subscriber), None)
            if stage is None:
                return None  # a handler that is not a stage's: only publish() knows it
            targets.append((stage, stage.direct_method(topic)))
        return DirectRoute(subscribers, len(subscribers), targets)

    def _publish(self, events: Iterable[MarketEvent]) -> int:
        publish = self.transport.publish
        advance = self.clock.advance
        last_times = self.status.last_market_time
        market = Topics.MARKET
        observe = self._event_observer_set
        in_order = self._checks_time_order
        clock = self.clock
        count = 0
        try:
            for event in events:
                ts = event.ts
                if in_order and clock.passed(ts):
                    raise self._out_of_order(event, clock.now())
                advance(ts)
                last_times[event.instrument] = ts
                count += 1
                try:
                    if observe is not None:
                        observe("feed", "out", event)
                    publish(market, event, event.instrument)
                except Exception as exc:
                    self._downstream_failure = exc  # not the feed's: see _pump
                    raise
        finally:
            self.status.market_events += count  # as a block delivery counts (see there)
            if count:
                self.status.last_market_event = event
        return count

    def _deliver(
        self, events: Iterable[MarketEvent], route: list[tuple[Stage, Callable[[Any], None]]]
    ) -> int:
        """What publish() would do for each event, minus a handler layer per stage; each
        stage's ``events_in`` is counted once for the block."""
        key = tuple(id(stage) for stage, _ in route)
        deliver = self._deliveries.get(key)
        if deliver is None:
            deliver = self._deliveries[key] = block_delivery(
                route,
                self.clock,
                self.status,
                self._out_of_order if self._checks_time_order else None,
            )
        return deliver(events)

    @property
    def _checks_time_order(self) -> bool:
        """A backtest on the simulated clock refuses an event earlier than the clock: the
        clock cannot go back, so it could never be traded on as of its time. (Live runs, and
        a backtest on the wall clock, take times that jump back.)"""
        return self.mode == "backtest" and type(self.clock) is SimulatedClock

    def _events_of(self, feed: Feed) -> Any:
        """``feed.events(ctx)``; what the call raises (a file that is not there) is the feed's
        failure."""
        try:
            return feed.events(self._feed_context())
        except TradeloomError:
            raise
        except Exception as exc:
            raise self._feed_failed(exc) from exc

    def _feed_failed(self, exc: Exception) -> FeedError:
        """The feed raised ``exc`` while giving its events, or gave something that is not a
        market event (an attribute missing, a time that cannot be compared)."""
        source = _source_name(self.feed)
        if isinstance(exc, LookupError | AttributeError | TypeError):
            read, given = _event_read_when(exc)
            if read and not isinstance(given, Bar | MarketTick):
                # Said as of a first event (see _check_first_event), not by what reading it
                # raised (``'NoneType' object has no attribute '__dict__'``).
                return FeedError(
                    f"{source} must give Bar or MarketTick events, not {type(given).__name__}"
                )
        if isinstance(exc, KeyError) and _raised_here(exc):
            # Delivery reads fields from the event's dict: one built without validation
            # (model_construct) may lack one.
            return FeedError(
                f"{source} gave something that is not a valid market event: it has no field "
                f"{exc.args[0]!r}"
                if exc.args
                else f"{source} gave an invalid market event"
            )
        if isinstance(exc, AttributeError | TypeError) and _raised_here(exc):
            return FeedError(
                f"{source} gave something that is not a valid market event: "
                f"{type(exc).__name__}: {exc}"
            )
        return FeedError(f"{source} raised {type(exc).__name__}: {exc}")

    def _out_of_order(self, event: MarketEvent, now: datetime) -> EventOrderError:
        """A backtest's feed gave an event earlier than one it gave before."""
        return EventOrderError(
            f"{_source_name(self.feed)} gave a market event for {event.instrument} at "
            f"{event.ts.isoformat()} after one at {now.isoformat()}: a backtest needs its "
            "events in time order (tradeloom.testing.merge puts several lists of events in "
            "order; the replay feed merges its files by time)"
        )

    def _count_market(self, count: int) -> None:
        self.status.market_events = self.result.market_events = count
        if self.status.last_market_time:
            last_time = self.result.last_event_time = max(self.status.last_market_time.values())
            last = self.status.last_market_event
            # A live feed's times may jump back: then the latest time is not the last event's.
            # (The last event may be the one a run failed on, built without validation and
            # lacking fields: then its own time is not read from it.)
            start = last_time
            if isinstance(last, Bar | MarketTick) and getattr(last, "ts", None) == last_time:
                with contextlib.suppress(AttributeError, TypeError):
                    start = _start_of(last)
            self.result.last_event_start = start
        self._report_progress(count)

    def _report_progress(self, count: int) -> None:
        if self.progress is not None and count > self._progress_reported:
            self.progress(count - self._progress_reported)
            self._progress_reported = count

    async def _yield_point(self, count: int) -> None:
        self._report_progress(count)
        self._blocks += 1
        if self.strategy_stage is not None:
            self.strategy_stage.check_decimal_context()
        if self.mode == "live":
            self.status.last_market_wall_time = WallClock().now()
            if self.portfolio_stage is not None:
                await self.portfolio_stage.keep_up_with_fills()
        # A live run's checkpoints are the ticker's, a task of its own: here the feed would
        # wait for the write (in a thread) and every market event behind it.
        if (
            self.mode == "backtest"
            and self.portfolio_stage is not None
            and self.portfolio_stage.checkpoint_due()
        ):
            await self._checkpoint_at_pause(self.portfolio_stage)
        if self._freezing and self._blocks % _FREEZE_EVERY_BLOCKS == 0:
            # What outlived these events (fills kept in the result, the journal) stays to the
            # end of a backtest: collect the garbage among the few objects made since the last
            # freeze, then freeze the rest, so that later collections never walk it again.
            gc.collect()
            gc.freeze()
        # Let signal handlers and other tasks run. A signal takes a few turns of the event
        # loop to act: the loop reads it, wakes the task that receives it, which cancels the
        # run; with one turn a SIGTERM stopped a slow backtest blocks later than Ctrl-C.
        for _ in range(_TURNS_AT_A_PAUSE):
            await anyio.sleep(0)

    async def _checkpoint_at_pause(self, stage: PortfolioStage) -> None:
        """A periodic checkpoint at a pause of the pump. A backtest paused between two times
        stores a state a resume can continue from as from a stop there: every portfolio
        stamped with this time, and the record of what is in flight (see
        :mod:`tradeloom.runtime.in_flight`), so that a run killed after it (``kill -9``, a
        machine that went down) loses no order when resumed."""
        in_flight_record = self._in_flight_record()
        await self._save_state(
            stage, in_flight_record, every_portfolio=in_flight_record is not None
        )

    async def _save_state(
        self,
        stage: PortfolioStage,
        in_flight_record: tuple[Callable[..., Any], str] | None,
        *,
        every_portfolio: bool,
    ) -> list[str]:
        """A checkpoint, then the record of what is in flight when every portfolio was saved
        (the record is read only with state of its time); the ids of the portfolios left
        unsaved."""
        await stage.checkpoint(every_portfolio=every_portfolio)
        unsaved = sorted(stage.book.dirty())
        if in_flight_record is not None and not unsaved:
            await self._save_in_flight_record(*in_flight_record)
        return unsaved

    async def _heartbeat(self, interval: float = 0.25) -> None:
        """Tell the health checks that the event loop runs (a task of its own: the ticker may
        wait for a journal write in a thread, with the loop free)."""
        status = self.status
        while True:
            status.loop_ran_at = datetime.now(UTC)
            await anyio.sleep(interval)

    async def _ticker(self, interval: float = 0.25) -> None:
        while True:
            await anyio.sleep(interval)
            now = self.clock.now()
            for stage in self.stages:
                stage.on_time(now)
            if self.portfolio_stage is not None:
                if self.portfolio_stage.checkpoint_due():
                    await self.portfolio_stage.checkpoint()
                else:
                    await self.portfolio_stage.flush_journal()

    async def _drain(self, consuming_done: anyio.Event) -> None:
        self.status.draining_since = WallClock().now()
        await call_hook_and_await(self.manager.hook.tradeloom_pipeline_stopping, pipeline=self)
        self.transport.stop_consuming()
        await consuming_done.wait()
        # Taken as the input ended, before on_stop and the rejections of what waits: what a
        # resumed run places again, also when the run fails after this (see _stopped_early).
        self._in_flight_at_end = in_flight_record = self._in_flight_record()
        self._between_times = False
        self._settle_pending()
        if self.mode == "backtest":
            self._warn_unseen_instruments()
            if self.feed is not None and not self.result.market_events + self.result.skipped_events:
                bad = self.result.dead_letter_count
                self.logger.warning(
                    "the feed delivered no market events%s: nothing was backtested",
                    f" ({bad} input(s) were bad, see the dead letters)" if bad else "",
                )
        await self.transport.flush()
        if self._replay_position is not None:
            await self._replay_position.save(self._events_taken())
            if self._feed_ended:
                self._replay_position.say_if_nothing_was_left(self._events_taken())
        if self.portfolio_stage is not None:
            self.portfolio_stage.close_equity_curve()
            # A backtest saves every portfolio, stamped where it got to. One that took no event
            # (stopped in on_start, an empty feed, a resume with nothing new) saves nothing:
            # nothing can have filled without a price, what it restored is stored already, and
            # stamped with the clock, already at the first event's time, a resume would skip
            # that time untaken.
            if self.mode != "backtest" or self.result.market_events:
                # A live run saves the portfolios whose holdings moved in price too (as at
                # each checkpoint): their stored equity is that of the end.
                self.result.unsaved_portfolios = await self._save_state(
                    self.portfolio_stage, in_flight_record, every_portfolio=self.mode == "backtest"
                )
            self.result.snapshots = self.portfolio_stage.final_snapshots()
            self._count_late_portfolios(self.portfolio_stage.book)
        self.result.duplicates_ignored = self.status.duplicates_ignored

    def _in_flight_record(self) -> tuple[Callable[..., Any], str] | None:
        """A backtest that took its last time whole: the record of the orders and signals in
        flight, and the back end's ``save_metadata`` to keep it with the state (see
        :mod:`tradeloom.runtime.in_flight`); taken before ``on_stop`` and the rejections of
        what is left waiting. None where there is nothing to say it with, or to say."""
        save_metadata = getattr(self.persistence, "save_metadata", None)
        if (
            self.mode != "backtest"
            or not isinstance(self.clock, SimulatedClock)  # no data time to be between
            or not self._between_times
            or save_metadata is None
            or self.portfolio_stage is None
            or self.risk_stage is None
            or self.executor is None
        ):
            return None
        try:
            orders = self.executor.waiting_orders()
            if orders is None:
                return None
            orders = list(orders)
            if not all(isinstance(order, Order) for order in orders):
                raise TypeError(
                    "waiting_orders() must return a list of Orders, not "
                    f"{', '.join(sorted({type(o).__name__ for o in orders}))}"
                )
            in_flight = InFlight(self.clock.now(), orders, self.risk_stage.waiting_signals())
            return save_metadata, record_in_flight(in_flight)
        except Exception as exc:  # it only informs a later resume: never fails a run
            if not self._waiting_orders_failed:  # once, not at every checkpoint
                self._waiting_orders_failed = True
                self.logger.warning(
                    "the executor could not tell its waiting orders (%s: %s): a run resumed "
                    "from this state cannot place them again",
                    type(exc).__name__,
                    exc,
                )
            return None

    async def _save_in_flight_record(self, save_metadata: Callable[..., Any], text: str) -> None:
        try:
            await self._call_persistence(save_metadata, {IN_FLIGHT_KEY: text})
        except PersistenceError as exc:  # a resume without it guesses: see WarmUp
            # Once, not at every checkpoint (a role that may not create the metadata table).
            log = self.logger.debug if self._in_flight_save_failed else self.logger.warning
            self._in_flight_save_failed = True
            log("%s; a run resumed from this state cannot place the orders in flight again", exc)

    def _settle_pending(self) -> None:
        """Strategies first (``on_stop`` may still trade), then what waits for prices: signals
        waiting for a first price and orders waiting to fill are rejected. A strategy may send
        again when told (a limit order that did not fill, retried at market): what it sends is
        settled the same way, round after round, until it sends nothing new."""
        strategies = [stage for stage in self.stages if stage.role == "strategy"]
        settling = [
            stage for role in ("risk", "execution") for stage in self.stages if stage.role == role
        ]
        for stage in strategies:
            stage.drain()
        for _ in range(_SETTLING_ROUNDS):
            sent = sum(stage.counters.events_out for stage in strategies)
            for stage in settling:
                stage.drain()
            if sum(stage.counters.events_out for stage in strategies) == sent:
                return
        self.logger.warning(
            "strategies still sent orders after %d rounds of rejections at the end of input: "
            "what they sent in the last round has no outcome",
            _SETTLING_ROUNDS,
        )

    def _warn_unseen_instruments(self) -> None:
        # A backtest's data is all there will be: an instrument a strategy asked for that never
        # came is a typo or the wrong file, and the strategy silently never traded it.
        seen: set[str] = set()
        for stage in self.stages:
            if isinstance(stage, StrategyStage):
                seen.update(stage.market_time.by_instrument)
                if self._resume is not None:
                    seen.update(self._resume.skipped_instruments)
                for strategy_id, names in stage.unseen_instruments(seen).items():
                    self.logger.warning(
                        "strategy %r asked for instruments that no market event carried: %s; "
                        "instruments in the data: %s",
                        strategy_id,
                        ", ".join(_with_closest(name, seen) for name in names),
                        ", ".join(sorted(seen)) or "none",
                    )

    def _count_late_portfolios(self, book: PortfolioBook) -> None:
        # A portfolio first seen during the run (a fill of a strategy run by another process)
        # started from its starting cash: count that in the starting equity too, so the
        # return compares the same portfolios at both ends.
        for portfolio_id in self.result.snapshots:
            if portfolio_id not in self._portfolios_at_start:
                self.result.starting_equity += book.starting_cash(portfolio_id)

    def where_it_stopped(self) -> str:
        """Where the run is, in words: the latest market time delivered and the fills so far
        (what ``result.interrupted`` says of a run interrupted there)."""
        times = self.status.last_market_time.values()
        if not times and self.result.skipped_events:
            return (
                f"while warming up on the stored state ({self.result.skipped_events:,} of its "
                "market events read), before the first market event after it"
            )
        if not times:
            return "before the first market event"
        return f"at market time {max(times).isoformat()} ({self.result.fill_count:,} fills so far)"

    async def _stopped_early(self) -> None:
        """The run failed or was interrupted (Ctrl-C): save what changed, and leave a result
        that says what happened until then (what was delivered, the books as they are now)."""
        self.status.loop_ran_at = None  # its heartbeat ended with the tasks: not "blocked"
        if self.status.draining_since is None:  # stopping too (health, /ready say so)
            self.status.draining_since = WallClock().now()
        if self.result.market_events < self.status.market_events:
            # Stopped inside the market loop: the result counts what was delivered, up to the
            # event the run stopped on, as the status does.
            self._count_market(self.status.market_events)
        await self._save_after_failure()
        if self.portfolio_stage is not None:
            # What _drain gives a complete run, whether the save above worked or not; best
            # effort, as the error that stopped the run is the one to raise.
            try:
                self.portfolio_stage.close_equity_curve()
                self.result.snapshots = self.portfolio_stage.final_snapshots()
                self._count_late_portfolios(self.portfolio_stage.book)
            except Exception as exc:
                self.logger.error("could not value the books after the run stopped: %s", exc)

    async def _save_after_failure(self) -> None:
        """The run failed: still journal the fills already applied and save what changed, so a
        restart starts from everything that happened (best effort; the error is raised)."""
        if self.portfolio_stage is None:
            return
        if not any(p.version for p in self.portfolio_stage.book.portfolios.values()):
            return  # nothing changed (it failed before any fill): nothing to save
        if self.mode == "backtest" and not self.status.market_events:
            return  # took no event: see _drain
        in_flight_record = self._in_flight_at_end or self._in_flight_record()
        with anyio.CancelScope(shield=True):
            try:
                self.result.unsaved_portfolios = await self._save_state(
                    self.portfolio_stage, in_flight_record, every_portfolio=self.mode == "backtest"
                )
            except Exception as exc:
                self.logger.error("could not save state after a failure: %s", exc)
                # Said by what the run reports too (not "its state up to the failure is saved").
                self.result.unsaved_portfolios = sorted(
                    self.portfolio_stage.book.dirty() or self.portfolio_stage.book.portfolios
                )

    async def _close(self) -> None:
        self.status.stopped_at = WallClock().now()
        errors: list[str] = []
        for what, closer in (
            ("transport", self.transport.close),
            ("feed's events", _closer(self._feed_iterator)),
            # Before the persistence: a feed that commits what it read asks whether the fills
            # it made are journaled (see MemoryTransport.delivered).
            ("feed", getattr(self.feed, "close", None)),
            ("persistence", getattr(self.persistence, "close", None)),
            ("dead-letter file", getattr(self.dead_letter_file, "close", None)),
        ):
            if closer is None:
                continue
            try:
                await maybe_await(closer())
            except Exception as exc:
                errors.append(f"{what}: {type(exc).__name__}: {exc}")
        if errors:
            self.logger.error("errors while closing: %s", "; ".join(errors))

    def _log_plugin_failure(self, failure: PluginError) -> None:
        self.logger.error("%s", failure, exc_info=failure.__cause__)

    def _on_dead_letter(self, letter: DeadLetter) -> None:
        self.status.dead_letters += 1
        self.result.add_dead_letter(letter)
        if self.dead_letter_file is not None:
            self.dead_letter_file.write(letter)
        count = self.status.dead_letters
        # A backtest's bad file can hold a bad row on every line: the log shows what it is
        # like, the result and the dead-letter file hold all of it. A live run logs each, as
        # it comes (days apart, maybe).
        quiet = self.mode == "backtest" and count > DEAD_LETTERS_LOGGED
        log = self.logger.debug if quiet else self.logger.warning
        log(
            "bad input from %s %s: %s",
            letter.source,
            letter.location,
            letter.reason,
            extra=_dead_letter_fields(letter),
        )
        if self.mode == "backtest" and count == DEAD_LETTERS_LOGGED:
            self.logger.warning(
                "more bad input is counted and kept (the result's dead letters, the "
                "dead-letter file) but not logged one by one (run with -vv to log it all)"
            )

    # -- health ----------------------------------------------------------------------------

    def health(self, now: datetime | None = None) -> list[HealthReport]:
        """Run every configured health check against the current status."""
        return run_health_checks(
            self.health_checks, self.status, now or WallClock().now(), self.ids.new_id
        )


_RAW_LOGGED = 200  # bytes of a dead letter's input in its log record (the file keeps all)


class _Refusing(Iterator[MarketEvent]):
    """The events of ``inner`` that ``refused`` lets through. Closing it closes ``inner``,
    also before the first event was read (a generator in its place would not)."""

    def __init__(self, inner: Iterator[MarketEvent], refused: Callable[[Any], bool]) -> None:
        self._inner = inner
        self._refused = refused
        self.taken = 0  # events taken from ``inner``, refused ones too

    def __next__(self) -> MarketEvent:
        while True:
            event = next(self._inner)
            self.taken += 1
            try:
                if not self._refused(event):
                    return event
            except (AttributeError, TypeError):
                return event  # not a market event: the pump says so

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def _dead_letter_fields(letter: DeadLetter) -> dict[str, str]:
    """The dead letter's parts as fields of its log record (a JSON log line shows them)."""
    raw = letter.raw[:_RAW_LOGGED].decode("utf-8", "backslashreplace")
    fields = {
        "source": letter.source,
        "location": letter.location,
        "error_type": letter.error_type,
        "reason": letter.reason,
        "raw": raw + ("..." if len(letter.raw) > _RAW_LOGGED else ""),
    }
    if letter.key is not None:
        fields["key"] = letter.key.decode("utf-8", "backslashreplace")
    return fields


def _with_closest(name: str, known: Iterable[str]) -> str:
    close = closest_name(name, known)
    return f"{name} (did you mean {close}?)" if close else name


def _closer(events: Any) -> Callable[[], Any] | None:
    """The method that closes a generator (or async generator) of events, if it has one."""
    close: Callable[[], Any] | None = getattr(events, "close", None) or getattr(
        events, "aclose", None
    )
    return close


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _source_name(feed: Feed | None) -> str:
    """How messages name where market events came from."""
    return "events=" if isinstance(feed, EventListFeed) else f"feed {type(feed).__name__}"


def how_it_ended(
    exc: BaseException, cancelled: type[BaseException]
) -> tuple[bool, BaseException | None]:
    """Whether a run that raised ``exc`` was interrupted (Ctrl-C, or ``cancelled``: the async
    library's cancellation), and the error it failed with (None: none). Tasks of one group may
    end both ways at once: a Ctrl-C while another task fails. A group of errors alone is the
    failure as it is."""
    leaves = exception_leaves(exc)
    stops = (KeyboardInterrupt, cancelled)
    interrupted = any(isinstance(leaf, stops) for leaf in leaves)
    errors = [leaf for leaf in leaves if isinstance(leaf, Exception)]
    if not errors:
        return interrupted, None
    return interrupted, errors[0] if interrupted else exc


def _described(exc: BaseException) -> str:
    """An error in words: a tradeloom error's message says what it is, others need a name."""
    if isinstance(exc, BaseExceptionGroup):
        sole = sole_exception(exc)
        if sole is not None:
            exc = sole
    if isinstance(exc, TradeloomError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _event_read_when(exc: BaseException) -> tuple[bool, Any]:
    """Whether the pipeline's own code was reading an event (a local named ``event``) when
    ``exc`` was raised there, and what that was."""
    if not _raised_here(exc):
        return False, None
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        if frame.f_code.co_filename in _READING_FILES and "event" in frame.f_locals:
            return True, frame.f_locals["event"]
    return False, None


def _raised_here(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by the pipeline's own code reading an event (not deeper; an
    event model's own attribute lookup, which raises for a field it lacks, counts as the
    reading)."""
    files = [
        frame.f_code.co_filename
        for frame, _ in traceback.walk_tb(exc.__traceback__)
        if not frame.f_code.co_filename.startswith(_PYDANTIC)
    ]
    return bool(files) and files[-1] in _READING_FILES


_READING_FILES = frozenset(
    {
        __file__,
        "<market delivery>",
        rest_of_time.__code__.co_filename,
        SimulatedClock.passed.__code__.co_filename,  # compares the event's time
    }
)
_PYDANTIC = os.path.dirname(pydantic.__file__) + os.sep


def _start_of(event: MarketEvent) -> datetime:
    """When what ``event`` tells began: a bar's start (its ``ts`` is its end), a tick's time."""
    return event.start if isinstance(event, Bar) else event.ts


def _check_first_event(event: Any, feed: Feed) -> None:
    """A feed may build its events without validation (trusted builders, model_construct):
    the first one is checked for what would otherwise fail later, deep in some stage and
    blamed on it (a naive time, a float price)."""
    source = _source_name(feed)
    if not isinstance(event, Bar | MarketTick):
        raise FeedError(f"{source} must give Bar or MarketTick events, not {type(event).__name__}")
    ts = event.ts
    if not isinstance(ts, datetime) or ts.utcoffset() != timedelta(0):
        raise FeedError(f"{source} gave an event whose ts is not a UTC datetime: {ts!r}")
    if type(event.price) is not Decimal:
        raise FeedError(
            f"{source} gave an event whose price is not a Decimal: {event.price!r} "
            f"({type(event.price).__name__})"
        )
