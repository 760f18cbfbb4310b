"""Transports carry events between stages: in memory, or over a Kafka-protocol broker."""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tradeloom.components import Codec, DeadLetter
from tradeloom.events import Event

if TYPE_CHECKING:
    from tradeloom.runtime.status import PipelineStatus
    from tradeloom.settings import Settings

Handler = Callable[[str, Event], None]
"""Called with the topic and the event. Synchronous; publishes its output through the
transport before returning."""

CommitBarrier = Callable[[], Awaitable[bool]]
"""Awaited before a transport commits what a role consumed; True when the role's effects are
durable (e.g. fills journaled), False to keep the positions uncommitted for now."""

AssignmentHook = Callable[[], Awaitable[None]]
"""Awaited when a role is assigned input, before it handles any (see
:meth:`Transport.add_assignment_hook`)."""

HeldEvents = Callable[[], Collection[UUID]]
"""The ids of events a role took in and keeps waiting (see :meth:`Transport.add_held_events`)."""

RevocationHook = Callable[[Callable[[str], bool]], None]
"""Called with ``moving(key)`` when a role's input moves to another member of its group (see
:meth:`Transport.add_revocation_hook`)."""


class Topics:
    """The stage boundaries. A transport may map them to prefixed names."""

    MARKET = "market"
    SIGNALS = "signals"
    ORDERS = "orders"
    REJECTIONS = "rejections"
    FILLS = "fills"
    SNAPSHOTS = "snapshots"
    DEAD_LETTERS = "dead_letters"

    ALL = (MARKET, SIGNALS, ORDERS, REJECTIONS, FILLS, SNAPSHOTS, DEAD_LETTERS)


class Transport(abc.ABC):
    """Delivers each published event to one handler of every subscribed role.

    Handlers of the same role in different processes share the work (consumer groups);
    every role gets every event of the topics it subscribed to.
    """

    #: publish() has delivered to every handler when it returns (deterministic, in-process).
    synchronous: bool = False
    #: An event may be delivered more than once (at-least-once): the transport skips a repeat
    #: by its event id within ``[pipeline] dedupe_window``, and beyond that the stages know
    #: the fills and rejections already journaled (see docs/writing-transport.md).
    may_redeliver: bool = True
    #: Keeps where a replay published through it got to (:meth:`read_replay_position`,
    #: :meth:`write_replay_position`), so that a restarted feed role goes on from there.
    keeps_replay_positions: bool = False

    def bind(
        self,
        *,
        codec: Codec,
        on_dead_letter: Callable[[DeadLetter], None],
        logger: logging.Logger,
        clock: Any,
        settings: Settings | None = None,
        status: PipelineStatus | None = None,
    ) -> None:
        """Called once by the pipeline before :meth:`subscribe`. ``settings`` (reconnection,
        dedupe window) and ``status`` (counters) are given by the runtime; tests may omit them."""
        self.codec = codec
        self.on_dead_letter = on_dead_letter
        self.logger = logger
        self.clock = clock
        self.settings = settings
        self.status = status

    @abc.abstractmethod
    def subscribe(self, role: str, topics: Sequence[str], handler: Handler) -> None:
        """Deliver events of ``topics`` to ``handler`` on behalf of ``role``."""

    @abc.abstractmethod
    def publish(self, topic: str, event: Event, key: str | None = None) -> None:
        """Send an event; ``key`` (the instrument) keeps one instrument's events in order."""

    def local_subscribers(self, topic: str) -> Sequence[Handler] | None:
        """The handlers ``publish(topic, ...)`` calls, in order, when publishing does nothing
        but call them in this process; None for any other delivery (the default).

        Return the transport's own live sequence, which grows as handlers subscribe: with it
        the pipeline hands events to the stages itself, in the same order (a layer of calls
        fewer per stage and event on the hottest path of a backtest), and notices a handler
        that subscribes later (then it publishes again, so that handler gets every event).
        """
        return None

    def group_id(self, role: str) -> str | None:
        """The consumer group processes of ``role`` share; None for a transport without
        consumer groups (in-process)."""
        return None

    def add_commit_barrier(self, role: str, barrier: CommitBarrier) -> None:  # noqa: B027
        """Await ``barrier`` before committing positions consumed by ``role``; commit only when
        it returns True. Transports that commit nothing (in-process) ignore it."""

    def add_held_events(  # noqa: B027
        self, role: str, topics: Sequence[str], held: HeldEvents
    ) -> None:
        """``held()`` gives the ids of the events of ``topics`` that ``role`` took in and keeps
        waiting, their effect still to come (a signal waiting for its instrument's first
        price, an order waiting for a price to fill at). No position is committed past the
        record of such an event: a process killed before it acts gets the record again after
        a restart (with what came after it, which stages handle as delivered again). At a
        rebalance the role's revocation hook publishes again what waits for input that moves
        (see :meth:`add_revocation_hook`), the transport forgets those ids (the copies are new
        to it too) and commits what was handled. Transports that commit nothing (in-process)
        ignore it."""

    def add_assignment_hook(self, role: str, hook: AssignmentHook) -> None:  # noqa: B027
        """Await ``hook`` whenever ``role`` is assigned input (at start, and when it takes
        over partitions a leaving member of its group had), before it handles any of it: a
        stage that keeps its own view of the fills catches up there on what the journal
        holds. Transports without a consumer group (in-process) ignore it."""

    def add_revocation_hook(self, role: str, hook: RevocationHook) -> None:  # noqa: B027
        """Call ``hook(moving)`` whenever input of ``role`` moves to another member of its
        group (or may: a rebalance), before the positions handled so far are committed.
        ``moving(key)`` tells whether the events keyed ``key`` (an instrument) that the role
        has handled come from input that moves: a stage that keeps some of them waiting (an
        executor's orders waiting for a price) publishes them again there, for the member that
        takes that input over. Transports without a consumer group (in-process) ignore it."""

    def add_decided_again(self, role: str, topics: Sequence[str]) -> None:  # noqa: B027
        """Handling an event of ``topics`` again after a restart makes ``role``'s output for it
        again (a strategy decides again on a market event): when a handler fails on such an
        event and the role stops, take back what that handling published, which would
        otherwise be published twice. Output for other topics stands (an executor's fill is a
        trade made). Transports that deliver in this process only ignore it."""

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep input that could not be used, with its reason."""
        self.on_dead_letter(letter)

    async def start(self) -> None:  # noqa: B027 - optional
        """Connect. Called before any publish."""

    async def run(self) -> None:  # noqa: B027 - optional
        """Consume and dispatch until :meth:`stop_consuming` is called."""

    def stop_consuming(self) -> None:  # noqa: B027 - optional
        """Stop fetching new input; events being handled finish."""

    async def flush(self) -> None:  # noqa: B027 - optional
        """Wait until everything published has been delivered (or written to the broker) and
        consumed positions are committed."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    async def read_replay_position(self, key: str) -> str | None:
        """The text last given to :meth:`write_replay_position` under ``key`` (by any run,
        in any process), None when there is none. Called after :meth:`start`, only on a
        transport that :attr:`keeps_replay_positions`; raise when it cannot be read (the run
        then stops before publishing anything)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no replay positions")

    async def write_replay_position(self, key: str, text: str) -> None:
        """Keep ``text`` under ``key`` once everything published so far is acknowledged
        (durable where the events are), so that a later run reads it back. Raise when it
        cannot: the pipeline says so and tries again later. See
        :mod:`tradeloom.runtime.replay_position`."""
        raise NotImplementedError(f"{type(self).__name__} keeps no replay positions")
