"""The interfaces plugins implement. Factories registered through the ``tradeloom_register_*``
hooks return objects of these shapes.

Methods documented as "may be async" can be plain functions or coroutine functions; the runtime
awaits whatever they return when it is awaitable.
"""

from __future__ import annotations

import abc
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

import attrs
import uuid6

from tradeloom.events import (
    Cancel,
    Event,
    Fill,
    HealthReport,
    MarketEvent,
    Order,
    PortfolioSnapshot,
    Signal,
)

if TYPE_CHECKING:
    import logging

    from tradeloom.settings import ReconnectSettings


@runtime_checkable
class IdGenerator(Protocol):
    """Mints event ids. Ids must be unique and sort by creation time (UUIDv7).

    A generator may also offer ``new_ids(count) -> list[UUID]``: ``count`` increasing ids
    at once, for events created together (see :func:`mint_ids`); and ``id_for(source: bytes,
    timestamp_ms: int | None) -> UUID``: the id of an input with an identity of its own (a
    record's place in a log), the same each time, so that an input read again is recognised
    (see :func:`tradeloom.ids.stable_id`).
    """

    def new_id(self) -> UUID: ...


def mint_ids(ids: IdGenerator, count: int) -> list[UUID]:
    """``count`` new ids for events created together, in increasing order: from the
    generator's ``new_ids(count)`` when it has one (one call, for a block of events), else
    from as many ``new_id()`` calls."""
    new_ids = getattr(ids, "new_ids", None)
    if new_ids is not None:
        minted: list[UUID] = new_ids(count)
        return minted
    new_id = ids.new_id
    return [new_id() for _ in range(count)]


def advance_ids_past(ids: IdGenerator, seen: Iterable[UUID]) -> None:
    """Tell a generator the highest id already persisted, when it supports that
    (``advance_past(uuid)``), so that ids minted after a restart sort after stored ones."""
    advance = getattr(ids, "advance_past", None)
    highest = max(seen, default=None)
    if advance is not None and highest is not None:
        advance(highest)


@runtime_checkable
class Clock(Protocol):
    """Tells the pipeline's time: simulated in a backtest, the wall clock when live."""

    def now(self) -> datetime: ...


class Codec(abc.ABC):
    """Turns events into bytes and back, losslessly."""

    content_type: str = "application/octet-stream"

    @abc.abstractmethod
    def encode(self, event: Event) -> bytes:
        """Serialize one event."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> Event:
        """Parse and validate one event; raise :class:`tradeloom.errors.DecodeError` with a
        reason when the bytes are not a valid event."""


@attrs.define(frozen=True)
class DeadLetter:
    """Input that could not be used, kept with the reason it was refused."""

    source: str
    reason: str
    error_type: str
    raw: bytes
    ts: datetime
    """When the input was refused (the replay feed: the wall-clock time, as its rows have no
    valid time of their own and are read ahead of a backtest's simulated clock)."""
    location: str = ""
    key: bytes | None = None
    """The record's key where the input was a keyed record (a Kafka topic's): a dead-letter
    topic keeps it, so a corrected record can be sent again with the same key and order."""


def _lag_not_shown(lags: Mapping[str, int]) -> None:
    """Where a feed context made without a ``report_lag`` sends the feed's lag: nowhere."""


@attrs.define
class FeedContext:
    """What a feed gets from the runtime."""

    ids: IdGenerator
    clock: Clock
    reconnect: ReconnectSettings
    logger: logging.Logger
    report_bad_input: Any  # Callable[[DeadLetter], None]
    codec: Codec | None = None
    report_lag: Callable[[Mapping[str, int]], None] = _lag_not_shown
    """A feed reading a broker topic may tell how far behind it is: records not yet handed
    out, per topic (``{"ticks": 120}``), the topics it reads now (a topic left out has no lag
    any more). The runtime shows them as consumer lag ``"feed/<topic>"``. At most about once a
    second."""
    consumer_group: str | None = None
    """The consumer group a feed reading a broker joins unless told another: the one the
    pipeline's transport names for the feed role (the ``redpanda`` transport's ``group_prefix``
    + ``"feed"``), so that two deployments with their own prefixes do not share one group (and
    split the data between them). None: the transport has no consumer groups."""
    reconnecting: dict[str, str] = attrs.Factory(dict)
    """Where a feed that lost its source says so while it reconnects: ``{what: since when and
    why}`` (``{"redpanda feed (ticks)": "broker unreachable since ...: ..."}``), the entry
    removed once connected again. The runtime's health check ``reconnection`` reports each as a
    warning, as it does the transport's."""
    skip_events: int = 0
    """For a feed that ``replays_from_start``: how many of its events, from the first, an
    earlier run already published to the broker (its feed role restarted; see
    :mod:`tradeloom.runtime.replay_position`). Leave them out, without pacing them, and take
    ids (``ids``) only for the events after them: an event published again then has the id it
    had. Bad input met while leaving them out was the earlier run's to report: do not report it
    again. Always 0 for other feeds."""


class Feed(abc.ABC):
    """A source of market events (ticks or bars), in time order per instrument (and across
    instruments for a backtest, whose clock cannot go back)."""

    #: True for a feed whose ``events()`` gives the same events from the start on every run
    #: (a replay of files), also when it returns an async iterator (the ``replay`` feed with
    #: ``speed``). A live run on stored state then warns when its first event is older than
    #: that state: they would trade again on top of books that are past them. A plain
    #: iterator is taken for a replay in any case. Published to a broker, its position is
    #: kept and a restart gives the number of events to leave out (``ctx.skip_events``).
    replays_from_start: bool = False

    @abc.abstractmethod
    def events(self, ctx: FeedContext) -> Iterator[MarketEvent] | AsyncIterator[MarketEvent]:
        """Yield market events. A replay feed returns a plain iterator (the backtest engine
        drives it synchronously; a paced one, an async iterator); a live feed returns an async
        iterator. Bad records are passed
        to ``ctx.report_bad_input`` and skipped, never raised."""

    def close(self) -> Any:  # noqa: B027 - optional hook, may be async
        """Release connections or files. May be async."""

    def replay_identity(self) -> str | None:
        """For a feed that ``replays_from_start``: text that names the events it gives (its
        data and how it is read, not how fast), the same on every run over the same data and
        another when the data changes. A position kept for a replay on a broker (see
        :mod:`tradeloom.runtime.replay_position`) is used only by a run whose feed gives the
        same text. None (the default): the feed's ``[feed]`` table stands for it."""
        return None


class RiskView(Protocol):
    """What validators may look at when judging a signal."""

    def last_price(self, instrument: str) -> Decimal | None: ...

    def position(self, strategy_id: str, instrument: str) -> Decimal:
        """Filled position plus the quantity of orders sent but not yet filled (signed): the
        position once every open order has filled."""
        ...

    def position_range(self, strategy_id: str, instrument: str) -> tuple[Decimal, Decimal]:
        """The lowest and the highest the position may come to, for limits that must hold
        whichever open orders fill: :meth:`position` without the open limit buys (they may
        never fill), and without the open limit sells. Market orders go at the next price and
        count in both. A resting take-profit sell does not make room for more buying."""
        ...

    def cash(self, strategy_id: str) -> Decimal: ...


class Validator(abc.ABC):
    """A pre-trade check. Returns ``None`` to pass a signal, or the reason to reject it."""

    #: A signal for an instrument without a known price always waits for its first price.
    #: Validators with ``needs_price = False`` judge it before that wait; the others after.
    needs_price: bool = True

    @abc.abstractmethod
    def validate(self, signal: Signal, view: RiskView) -> str | None:
        """Return ``None`` when the signal may trade, else a human-readable reason."""


@attrs.define
class ExecutionContext:
    """What an executor gets from the runtime: ids, time and where to send results."""

    ids: IdGenerator
    clock: Clock
    emit: Any  # Callable[[Event], None]: Fill or Rejection
    logger: logging.Logger


def report_cannot_cancel(logger: logging.Logger, executor: object, cancel: Cancel) -> None:
    """Log that ``executor`` cannot cancel, so the order of ``cancel.signal`` goes on."""
    logger.warning(
        "executor %s cannot cancel orders: the order of signal %s (%s) goes on",
        type(executor).__name__,
        cancel.signal.event_id,
        cancel.signal.instrument,
    )


PricedMarketMethod = Callable[[Any, Decimal, datetime, str], None]
"""``method(event, price, ts, instrument)``: a market method given what delivery read of the
event (see :meth:`Executor.priced_market_method`)."""


class PricedMarket:
    """For a stage or an executor whose market method is given the event's price, time and
    instrument: define ``on_market_at(event, price, ts, instrument)``, and this gives
    ``on_market(event)``, which reads them, and ``priced_market_method()``, which returns
    ``on_market_at`` (see :meth:`Executor.priced_market_method`). List it before the base
    class: ``class MyExecutor(PricedMarket, Executor)``."""

    def on_market(self, event: MarketEvent) -> None:
        self.on_market_at(event, event.price, event.ts, event.instrument)

    def priced_market_method(self) -> PricedMarketMethod:
        return self.on_market_at

    def on_market_at(
        self, event: MarketEvent, price: Decimal, ts: datetime, instrument: str
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define on_market_at")


class Executor(abc.ABC):
    """Turns orders into fills (or rejections)."""

    def bind(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def on_market(self, event: MarketEvent) -> None:
        """A new price. Called before strategies see the same event."""

    def priced_market_method(self) -> PricedMarketMethod | None:
        """Optional, for speed: a method doing what :meth:`on_market` does, given the event's
        price, time and instrument as well: ``method(event, price, ts, instrument)``. Delivery
        in one process reads them once for every stage (each read of an event's field or
        property costs a call) and then calls that method instead of ``on_market``, but only
        while ``on_market`` is the one of the class that overrides this method (not overridden
        in a subclass, nor replaced on the instance). None (the default): ``on_market``."""
        return None

    @abc.abstractmethod
    def on_order(self, order: Order) -> None:
        """An order that passed every validator."""

    def on_cancel(self, cancel: Cancel) -> None:
        """A strategy asks to cancel the order made from ``cancel.signal``. If the order was
        still open, cancel it and emit a :class:`~tradeloom.events.Rejection` of the signal
        with ``validator`` ``"cancel"`` (:data:`~tradeloom.events.CANCELLED`); if it was
        filled or rejected already, emit nothing (that outcome is the answer). An executor
        that cannot cancel leaves this as it is: the request is logged and the order goes on.
        """
        report_cannot_cancel(self.ctx.logger, self, cancel)

    def on_time(self, now: datetime) -> None:  # noqa: B027 - optional hook
        """Called as time passes, to expire what waits too long."""

    def drain(self) -> None:  # noqa: B027 - optional hook
        """The input has ended: settle or reject everything still pending."""

    def hand_over(self, moving: Callable[[str], bool]) -> list[Order]:
        """Take out and return the orders still waiting (for a price, or resting) for every
        instrument for which ``moving(instrument)`` is true: across processes, those
        instruments' prices and orders may move to another execution process (at a
        rebalance), which gets these orders published again (as new orders of the same
        signals) and fills them. Return each with ``market_ts`` set to the data time it was
        placed at, when that is later, so it is not filled at an earlier price there. Forget
        the orders and the instruments' prices: should one come back, it is taken again, and
        priced afresh. A cancel of such an order may come before it (answer it as for an
        order never had, and ignore that order). An executor that keeps nothing waiting
        returns ``[]`` (the default)."""
        return []

    def waiting_orders(self) -> list[Order] | None:
        """The orders still waiting here (for a price, or resting), each as :meth:`hand_over`
        would return it, but left in place: a backtest keeps them with the state it stores,
        and a backtest resumed from that state places them again, so that they fill as in a
        run that never stopped (see docs/writing-strategy.md, "Resuming a backtest"). Orders
        of one instrument in the order they were placed. ``None`` (the default): this
        executor cannot tell, and a resumed backtest makes do without them."""
        return None

    def waiting_order_ids(self) -> Collection[UUID]:
        """The ids (``event_id``) of the orders still waiting here, for a price or resting.
        Across processes their records are not committed while they wait, so an execution
        process killed meanwhile reads them again when it restarts, and places them again
        (see ``Transport.add_held_events``); an executor that returns nothing here loses
        them with the process. An executor that keeps nothing waiting returns an empty
        collection (the default)."""
        return ()


class Persistence(abc.ABC):
    """Durable storage of the fills journal and portfolio snapshots. Every method may be async.

    ``record_fills`` must be idempotent (a fill whose ``order_id`` is stored already is
    ignored) and ``save_snapshots`` atomic (all or none)."""

    def open(self) -> Any:  # noqa: B027 - optional hook
        """Connect and create or migrate the schema."""

    def close(self) -> Any:  # noqa: B027 - optional hook
        """Release connections."""

    # Optional: ``claim_for_writing()``. The pipeline calls it right after open() in the
    # process that writes the state (the portfolio role); a back end that allows one writer
    # per store takes its hold there and raises PersistenceError while another process has
    # it, so that the second of two runs on one store fails before it reads anything.
    #
    # Optional: ``load_fills_after(count)``, the fills of every portfolio after the first
    # ``count`` in record order (ValueError unless count is an int >= 0). Strategy and risk
    # processes read only what was journaled since they last looked when they are assigned
    # partitions; without it they read the whole journal each time. Only for an append-only
    # journal whose order never changes.
    #
    # Optional: ``record_rejections(rejections)`` and ``load_rejections(after=0)``: the
    # rejections journal, appended in order, one per signal (a rejection whose signal has one
    # stored is ignored), read back after the first ``after``. Across processes the portfolio
    # process journals every rejection, and the risk and execution processes read them, so
    # that a signal or order read again after a crash is not decided or executed twice.
    # With ``count_rejections()`` too (how many the journal holds), they read only the newest
    # they keep in memory (100,000), not the whole journal.
    #
    # Optional: ``save_metadata(items)`` and ``load_metadata()``: a few named texts kept with
    # the state, each key's latest value (``save_metadata`` updates the keys it is given,
    # ``load_metadata`` returns ``dict[str, str]``, ``{}`` when none were saved). The pipeline
    # keeps there what the settings of the run that saved the state were, so that a resumed
    # run can say which of them changed. Without them it cannot tell.

    @abc.abstractmethod
    def record_fills(self, fills: Sequence[Fill]) -> Any:
        """Append fills to the journal, ignoring fills already stored (by ``order_id``)."""

    @abc.abstractmethod
    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> Any:
        """Store snapshots; the latest per portfolio is what :meth:`load_snapshots` returns."""

    @abc.abstractmethod
    def load_snapshots(self) -> Any:
        """Return ``dict[portfolio_id, PortfolioSnapshot]`` of the latest snapshot of each
        portfolio. Raise :class:`tradeloom.errors.CorruptStateError` when stored data cannot
        be read back."""

    @abc.abstractmethod
    def load_fills(self, portfolio_id: str | None = None) -> Any:
        """Return the journaled fills (of one portfolio, or all) in the order recorded."""


class HealthCheck(abc.ABC):
    """Looks at the pipeline's status and reports on one concern.

    Give each report an id from :attr:`new_id`: a pipeline that builds the check sets it to
    its configured id generator (``[pipeline] id_generator``); until then it mints UUIDv7s.
    """

    new_id: Callable[[], UUID] = staticmethod(uuid6.uuid7)

    @abc.abstractmethod
    def check(self, status: Any, now: datetime) -> Sequence[HealthReport] | HealthReport:
        """Return one or more reports.

        ``status`` is a :class:`tradeloom.runtime.status.PipelineStatus`.
        """


Factory = Any
"""A class or callable building a component from its configured parameters."""
Registrations = Mapping[str, Factory]
