"""The ``redpanda`` transport: every stage boundary is a Kafka topic, every role a consumer
group, delivery at least once with positions committed only after the events' effects are
delivered."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any
from uuid import UUID

import attrs
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)

from tradeloom.backoff import ReconnectExhausted
from tradeloom.components import DeadLetter
from tradeloom.errors import DecodeError
from tradeloom.events import (
    Bar,
    Cancel,
    Event,
    Fill,
    MarketTick,
    Order,
    PortfolioSnapshot,
    Rejection,
    Signal,
)
from tradeloom.runtime.clock import WallClock
from tradeloom.runtime.dedupe import RecentIds
from tradeloom.runtime.transport import (
    AssignmentHook,
    CommitBarrier,
    Handler,
    HeldEvents,
    RevocationHook,
    Topics,
    Transport,
)
from tradeloom.settings import ReconnectSettings
from tradeloom_decimal.codec import DecimalJsonCodec
from tradeloom_redpanda.connection import (
    LAG_INTERVAL_SECONDS,
    BrokerLink,
    BrokerSetupError,
    close_bounded,
)
from tradeloom_redpanda.dead_letters import dead_letter_record
from tradeloom_redpanda.options import REPLAY_POSITIONS, TransportOptions

EXPECTED_TYPES: dict[str, tuple[type[Event], ...]] = {
    Topics.MARKET: (MarketTick, Bar),
    Topics.SIGNALS: (Signal, Cancel),
    Topics.ORDERS: (Order, Cancel),
    Topics.REJECTIONS: (Rejection,),
    Topics.FILLS: (Fill,),
    Topics.SNAPSHOTS: (PortfolioSnapshot,),
}


@attrs.define(slots=True)
class _Outgoing:
    seq: int
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


@attrs.define
class TransportStats:
    """Counters of one transport instance (this process)."""

    published: int = 0
    delivered: int = 0
    consumed: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    commits: int = 0
    commits_failed: int = 0
    resent: int = 0


class _Role:
    """One role of this process: its consumer group, handlers and uncommitted positions."""

    def __init__(self, role: str, group_id: str) -> None:
        self.role = role
        self.group_id = group_id
        self.handlers: dict[str, list[Handler]] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.lock = asyncio.Lock()
        self.pending: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.lag_measured = 0.0
        self.assigned: set[TopicPartition] = set()
        self.seen: RecentIds | None = None
        self.barrier: CommitBarrier | None = None
        self.assignment_hooks: list[AssignmentHook] = []
        self.revocation_hooks: list[RevocationHook] = []
        # Events kept waiting by the role (add_held_events): the sources of their ids, the
        # topics they come from, and where their records are.
        self.held_sources: list[HeldEvents] = []
        self.held_topics: set[str] = set()
        self.handled_at: dict[UUID, tuple[TopicPartition, int]] = {}  # since the last look
        self.held_at: dict[UUID, tuple[TopicPartition, int]] = {}
        self.committed: dict[TopicPartition, int] = {}  # the last position committed here
        # Topics whose handling, failed, takes back what it published (add_decided_again).
        self.decided_again: set[str] = set()
        # The partition each key came from, per topic (kept for the revocation hooks).
        self.key_partitions: dict[tuple[str, bytes | None], int] = {}
        self.catching_up: asyncio.Task[None] | None = None

    async def stop_catching_up(self) -> None:
        """Cancel a catch-up still running (its partitions move, or the process stops); the
        next assignment catches up again."""
        task, self.catching_up = self.catching_up, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits a role's handled positions before its partitions move to another member."""

    def __init__(self, transport: RedpandaTransport, role: _Role) -> None:
        self.transport = transport
        self.role = role

    async def on_partitions_revoked(self, revoked: Any) -> None:
        role = self.role
        await role.stop_catching_up()
        async with role.lock:  # the batch being handled finishes first
            # Events waiting on input that moves: the hooks publish them again for the
            # member that takes it over (then they no longer hold the commit back).
            self.transport._held_positions(role)
            handed = [i for i, (partition, _) in role.held_at.items() if partition in revoked]
            if role.revocation_hooks:
                await self.transport._hand_over(role, revoked)
            if role.seen is not None:
                for event_id in handed:  # published again: new, also should it come back here
                    role.seen.discard(event_id)
            try:
                await self.transport._commit(role)
            except Exception as exc:  # the rebalance must go on
                self.transport.logger.warning(
                    "role %s: positions not committed before rebalance: %s", role.role, exc
                )
            for partition in revoked:
                role.pending.pop(partition, None)
                role.positions.pop(partition, None)
                role.committed.pop(partition, None)
            for event_id, (partition, _) in list(role.held_at.items()):
                if partition in revoked:
                    del role.held_at[event_id]
        role.assigned.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        role = self.role
        role.assigned = set(assigned)
        self.transport.logger.info(
            "role %s (group %s): assigned partitions %s",
            role.role,
            role.group_id,
            _partitions(assigned) or "none",
        )
        transport = self.transport
        consumer = role.consumer
        if consumer is None or not transport._catches_up(role, assigned):
            return
        # aiokafka sends no heartbeat until this listener returns, and reading the journal
        # and the portfolio's positions may take longer than the session timeout (the member
        # would be expelled, and another one handle its records again): the catch-up runs in
        # a task, with the partitions paused until it is done, so that no record is handled
        # before the books have caught up.
        consumer.pause(*assigned)
        role.catching_up = asyncio.ensure_future(transport._catch_up_then_resume(role, assigned))


class RedpandaTransport(Transport):
    """Carries events between stages over a Kafka-protocol broker (Redpanda, Kafka).

    Each stage boundary (market, signals, orders, rejections, fills, snapshots, dead letters)
    is a topic named ``topic_prefix + boundary`` (or as set in ``topics``); records are keyed
    by instrument, so one instrument's events stay in order. Each role consumes through the
    consumer group ``group_prefix + role``: processes of one role share the partitions and take
    over a leaving member's partitions.

    Delivery is at least once. After handling a batch of records, the transport waits until
    the broker acknowledged everything the handlers published, runs the role's commit barrier
    (the portfolio's: fills journaled), and only then commits the batch's positions. A record
    delivered again (after a crash or a failed commit) is skipped by event id within the
    ``[pipeline] dedupe_window``; fills are also idempotent by order id in the portfolio.

    Records that do not decode, or carry the wrong event type for their topic, are written to
    the dead-letter topic with the error in headers and the original bytes, counted, and
    skipped. Broker outages follow ``[reconnect]``; when the attempts run out, :meth:`run`
    raises :class:`~tradeloom.backoff.ReconnectExhausted` and the pipeline drains and stops.
    """

    synchronous = False
    may_redeliver = True
    keeps_replay_positions = True

    def __init__(self, **params: Any) -> None:
        self.options = TransportOptions.from_params("redpanda transport", params)
        self.stats = TransportStats()
        self.logger = logging.getLogger("tradeloom.redpanda.transport")
        self._roles: dict[str, _Role] = {}
        self._logical = {self.options.topic_name(t): t for t in Topics.ALL}
        self._physical = {t: self.options.topic_name(t) for t in Topics.ALL}
        self._seq = 0
        self._outbox: deque[_Outgoing] = deque()
        self._unconfirmed: dict[int, _Outgoing] = {}
        self._unconfirmed_heap: list[int] = []
        self._failed: list[tuple[_Outgoing, BaseException]] = []
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None
        self._link: BrokerLink | None = None
        self._started = False
        self._closed = False
        # Replaced by bind() in a pipeline; these let the transport run on its own too.
        self.codec = DecimalJsonCodec()
        self.clock: Any = WallClock()
        self.on_dead_letter = _ignore

    def __repr__(self) -> str:
        return f"RedpandaTransport({self.options.describe()}, prefix={self.options.topic_prefix!r})"

    # -- wiring -------------------------------------------------------------------------------

    def topic(self, boundary: str) -> str:
        """The broker topic of a stage boundary (one of :class:`Topics`)."""
        return self._physical[boundary]

    def group_id(self, role: str) -> str:
        return f"{self.options.group_prefix}{role}"

    @property
    def link(self) -> BrokerLink:
        if self._link is None:
            raise RuntimeError("the redpanda transport is not started")
        return self._link

    def _role(self, role: str) -> _Role:
        entry = self._roles.get(role)
        if entry is None:
            entry = self._roles[role] = _Role(role, self.group_id(role))
        return entry

    def _check_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            if topic not in self._physical:
                raise ValueError(f"unknown topic {topic!r}; known: {', '.join(Topics.ALL)}")

    def subscribe(self, role: str, topics: Sequence[str], handler: Handler) -> None:
        self._check_topics(topics)
        entry = self._role(role)
        for topic in topics:
            entry.handlers.setdefault(topic, []).append(handler)

    def add_commit_barrier(self, role: str, barrier: CommitBarrier) -> None:
        self._role(role).barrier = barrier

    def add_assignment_hook(self, role: str, hook: AssignmentHook) -> None:
        self._role(role).assignment_hooks.append(hook)

    def add_held_events(self, role: str, topics: Sequence[str], held: HeldEvents) -> None:
        self._check_topics(topics)
        entry = self._role(role)
        entry.held_sources.append(held)
        entry.held_topics.update(topics)

    def add_revocation_hook(self, role: str, hook: RevocationHook) -> None:
        self._role(role).revocation_hooks.append(hook)

    def add_decided_again(self, role: str, topics: Sequence[str]) -> None:
        self._check_topics(topics)
        self._role(role).decided_again.update(topics)

    async def _hand_over(self, role: _Role, revoked: Any) -> None:
        """Call the role's revocation hooks with what moves (the keys that came from a
        ``revoked`` partition), and deliver what they publish before the positions are
        committed: the member taking the partitions over reads on from there."""
        moving_partitions = {(tp.topic, tp.partition) for tp in revoked}
        topics = {self._physical[boundary] for boundary in role.handlers}
        key_partitions = role.key_partitions

        def moving(key: str) -> bool:
            raw = key.encode()
            for topic in topics:
                partition = key_partitions.get((topic, raw))
                if partition is not None and (topic, partition) in moving_partitions:
                    return True
            return False

        published = self._seq
        for hook in role.revocation_hooks:
            try:
                hook(moving)
            except Exception as exc:  # the rebalance must go on
                self.logger.error(
                    "role %s: handing over before a rebalance failed: %r", role.role, exc
                )
        if self._seq != published:
            await self._deliver_bounded(f"role {role.role}: handing over")

    def _catches_up(self, role: _Role, assigned: Any) -> bool:
        """Whether an assignment of ``assigned`` gives ``role`` anything to catch up on: the
        fills (see ``_catch_up``), or the market records it handled (``_remember_handled``)."""
        market = self._physical[Topics.MARKET]
        if (
            role.seen is not None
            and self.options.dedupe_lookback
            and any(tp.topic == market for tp in assigned)
        ):
            return True
        if role.role == "portfolio":
            return False
        fills_topic = self._physical[Topics.FILLS]
        return bool(role.assignment_hooks) or any(tp.topic == fills_topic for tp in assigned)

    async def _catch_up_then_resume(self, role: _Role, assigned: Any) -> None:
        started = asyncio.get_running_loop().time()
        try:
            async with role.lock:
                await self._remember_handled(role, assigned)
                await self._catch_up(role, assigned)
        finally:
            consumer = role.consumer
            if consumer is not None:
                owned = consumer.assignment()
                try:
                    consumer.resume(*[tp for tp in assigned if tp in owned])
                except Exception as exc:  # moved meanwhile: the next assignment starts afresh
                    self.logger.warning(
                        "role %s: could not resume partitions after catching up: %r",
                        role.role,
                        exc,
                    )
        self.logger.debug(
            "role %s: caught up in %.2f s",
            role.role,
            asyncio.get_running_loop().time() - started,
        )

    async def _remember_handled(self, role: _Role, assigned: Any) -> None:
        """Remember the ids of the market records just before where the role's group
        committed in ``assigned``: a tick the feed published again after a crash (the same
        id, at a later offset) is then skipped also by a role that restarted after handling
        the first one, whose memory of ids began empty (``dedupe_lookback``)."""
        seen, lookback, consumer = role.seen, self.options.dedupe_lookback, role.consumer
        market = self._physical[Topics.MARKET]
        partitions = [tp for tp in assigned if tp.topic == market]
        if seen is None or not lookback or consumer is None or not partitions:
            return
        reader: AIOKafkaConsumer | None = None
        remembered = 0
        try:
            # Bounded, also the committed positions' lookup (which retries while the group's
            # coordinator is unknown): the partitions wait, paused, until this is done.
            async with asyncio.timeout(self.options.operation_timeout_seconds):
                ends: dict[TopicPartition, int] = {}
                for tp in partitions:
                    committed = await consumer.committed(tp)
                    if committed:
                        ends[tp] = committed
                if not ends:
                    return
                reader = AIOKafkaConsumer(**self.options.consumer_kwargs(), group_id=None)
                await reader.start()
                reader.assign(list(ends))
                for tp, end in ends.items():
                    reader.seek(tp, max(0, end - lookback))
                while ends:
                    batch = await reader.getmany(*ends, timeout_ms=200)
                    for tp, records in batch.items():
                        for record in records:
                            if record.offset < ends.get(tp, -1) and record.value:
                                try:
                                    seen.add(self.codec.decode(record.value).event_id)
                                    remembered += 1
                                except Exception:  # a bad record: dead-lettered when handled
                                    pass
                    for tp in list(ends):
                        if await reader.position(tp) >= ends[tp]:
                            del ends[tp]
        except Exception as exc:  # a missed repeat is not worth failing the catch-up over
            self.logger.warning(
                "role %s: could not read back the records before its positions: %r",
                role.role,
                exc,
            )
        finally:
            if reader is not None:
                await close_bounded(reader.stop(), self.options.operation_timeout_seconds)
        self.logger.debug("role %s: remembered %d market event ids", role.role, remembered)

    async def _catch_up(self, role: _Role, assigned: Any) -> None:
        """A role keeping its own view of the fills (the strategies', the risk stage's) takes
        what the fills journal holds (its assignment hooks), then reads the fills again from
        where the portfolio's group committed: a fill is committed by the portfolio only once
        it is journaled, so the two together miss nothing that another member applied before
        leaving, or that this role applied and committed before a restart while the journal
        did not hold it yet. What this process applied already is skipped (by event id and,
        in the books, by order id)."""
        if role.role == "portfolio":
            return  # the journal is its own
        fills_topic = self._physical[Topics.FILLS]
        partitions = sorted(
            (tp for tp in assigned if tp.topic == fills_topic), key=lambda tp: tp.partition
        )
        durable: dict[TopicPartition, int] = {}
        if partitions:
            # Read before the journal: everything before these positions is in it then.
            try:
                durable = await self._committed_by(self.group_id("portfolio"), partitions)
            except Exception as exc:  # unknown: read as where the portfolio commits nothing
                self.logger.warning(
                    "role %s: the portfolio's positions could not be read (%r)", role.role, exc
                )
        for hook in role.assignment_hooks:
            try:
                await hook()
            except Exception as exc:  # the rebalance must go on; the view may lag (logged)
                self.logger.error(
                    "role %s: could not catch up on the fills journal: %r", role.role, exc
                )
        consumer = role.consumer
        if consumer is None:
            return
        try:
            for tp in partitions:
                await self._read_fills_again(role, consumer, tp, durable.get(tp))
        except Exception as exc:
            self.logger.error(
                "role %s: could not read the fills again after an assignment: %r", role.role, exc
            )

    async def _read_fills_again(
        self, role: _Role, consumer: AIOKafkaConsumer, tp: TopicPartition, durable: int | None
    ) -> None:
        """Seek ``tp`` back to ``durable`` (the portfolio's position) when this group is past
        it; where the portfolio committed nothing, to where it would start."""
        if durable is None:
            if self.options.auto_offset_reset != "earliest":
                return  # the portfolio would start at the end: nothing before is its
            await consumer.seek_to_beginning(tp)
            self.logger.info(
                "role %s: reading %s[%d] again from its start (the portfolio has committed "
                "nothing there)",
                role.role,
                tp.topic,
                tp.partition,
            )
            return
        own = await consumer.committed(tp)
        if own is None or durable < own:
            consumer.seek(tp, durable)
            self.logger.info(
                "role %s: reading %s[%d] again from %d, where the journal ends",
                role.role,
                tp.topic,
                tp.partition,
                durable,
            )

    async def _committed_by(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The positions ``group`` committed on ``partitions`` (those it committed at all),
        read through a consumer that names the group without joining it."""
        peeker = AIOKafkaConsumer(
            **self.options.client_kwargs(), group_id=group, enable_auto_commit=False
        )
        try:
            async with asyncio.timeout(self.options.operation_timeout_seconds):
                await peeker.start()
                found = {tp: await peeker.committed(tp) for tp in partitions}
        finally:
            await close_bounded(peeker.stop(), self.options.operation_timeout_seconds)
        return {tp: int(position) for tp, position in found.items() if position is not None}

    def _reconnect_settings(self) -> ReconnectSettings:
        settings = getattr(self, "settings", None)
        return settings.reconnect if settings is not None else ReconnectSettings()

    def _dedupe_window(self) -> int:
        settings = getattr(self, "settings", None)
        return settings.pipeline.dedupe_window if settings is not None else 100_000

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        options = self.options
        status = getattr(self, "status", None)
        self._link = BrokerLink(
            "redpanda transport",
            options,
            [self._physical[t] for t in Topics.ALL],
            self._reconnect_settings(),
            self.logger,
            reconnecting=status.reconnecting if status is not None else None,
        )
        await self._link.connect()
        producer = AIOKafkaProducer(
            **options.client_kwargs(),
            acks=options.acks,
            linger_ms=options.linger_ms,
            compression_type=options.compression_type,
            enable_idempotence=False,
        )
        await producer.start()
        self._producer = producer
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())
        window = self._dedupe_window()
        for role in self._roles.values():
            if not role.handlers:
                continue
            role.seen = RecentIds(window) if window else None
            consumer = AIOKafkaConsumer(
                **options.consumer_kwargs(),
                group_id=role.group_id,
                partition_assignment_strategy=(RangePartitionAssignor,),
            )
            await consumer.start()
            consumer.subscribe(
                [self._physical[t] for t in role.handlers], listener=_Rebalance(self, role)
            )
            role.consumer = consumer
        self.logger.info(
            "connected to %s; roles %s",
            options.describe(),
            ", ".join(r.role for r in self._roles.values() if r.handlers) or "none (publish only)",
        )

    async def run(self) -> None:
        """Consume every subscribed role until :meth:`stop_consuming`; raise what made the
        transport give up (e.g. :class:`~tradeloom.backoff.ReconnectExhausted`)."""
        loops = [
            asyncio.ensure_future(self._consume(role))
            for role in self._roles.values()
            if role.consumer is not None
        ]
        watchdog = asyncio.ensure_future(self._watch())
        try:
            await self._stopping.wait()
            await self._let_loops_finish(loops)
        finally:
            watchdog.cancel()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(watchdog, *loops, return_exceptions=True)
        if self._failure is not None:
            raise self._failure

    async def _let_loops_finish(self, loops: list[asyncio.Future[None]]) -> None:
        """Let each role finish the batch in hand and commit, for a bounded time: a poll made
        while the group rebalances waits for the new assignment without a time limit (in
        aiokafka), and a rebalance may not end. What such a role handled since its last
        commit comes again after the restart (the finally of run() cancels it)."""
        if not loops:
            return
        options = self.options
        # The batch in hand: its effects delivered, the commit barrier (a journal write), the
        # commit, each bounded by the operation timeout or close to it; and one poll.
        bound = 3 * options.operation_timeout_seconds + options.poll_timeout_ms / 1000
        _, waiting = await asyncio.wait(loops, timeout=bound)
        if waiting:
            self.logger.warning(
                "%d consuming role(s) still busy after %.1f s (waiting for their group to "
                "rebalance, or for a commit): stopping them; what they handled since their "
                "last commit will be delivered again",
                len(waiting),
                bound,
            )

    def stop_consuming(self) -> None:
        self._stopping.set()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._stopping.set()
        self._notify()

    async def _watch(self) -> None:
        try:
            await self.link.watch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # run() raises it
            self._fail(exc)

    async def flush(self) -> None:
        """Deliver everything published and commit what was handled, each within
        ``operation_timeout_seconds``; failures are logged (the positions stay uncommitted and
        the events are delivered again later)."""
        await self._deliver_bounded("flush")
        for role in self._roles.values():
            if role.consumer is None or not role.pending:
                continue
            async with role.lock:
                try:
                    await self._commit(role)
                except Exception as exc:  # reported; redelivered later
                    self.logger.error("role %s: final commit failed: %s", role.role, exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            await self._deliver_bounded("close")
        for role in self._roles.values():
            await role.stop_catching_up()
            consumer, role.consumer = role.consumer, None
            if consumer is not None:
                await close_bounded(consumer.stop(), self.options.operation_timeout_seconds)
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._producer is not None:
            await close_bounded(self._producer.stop(), self.options.operation_timeout_seconds)
        if self._link is not None:
            await self._link.close()
        stats = self.stats
        self.logger.info(
            "closed: %d published, %d consumed, %d duplicates skipped, %d dead letters, "
            "%d commits (%d failed), %d resent, %d reconnections",
            stats.published,
            stats.consumed,
            stats.duplicates,
            stats.dead_letters,
            stats.commits,
            stats.commits_failed,
            stats.resent,
            self._link.reconnections if self._link else 0,
        )

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, topic: str, event: Event, key: str | None = None) -> None:
        self._enqueue(
            self._physical[topic],
            key.encode() if key is not None else None,
            self.codec.encode(event),
        )

    def _enqueue(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._seq += 1
        self._outbox.append(_Outgoing(self._seq, topic, key, value, headers))
        self.stats.published += 1
        self._wake.set()

    def dead_letter(self, letter: DeadLetter) -> None:
        """Count and log ``letter`` (through the pipeline) and write it to the dead-letter
        topic: the original bytes, with the error in headers."""
        self.stats.dead_letters += 1
        self.on_dead_letter(letter)
        key, raw, headers = dead_letter_record(letter)
        self._enqueue(self._physical[Topics.DEAD_LETTERS], key, raw, headers)

    # -- replay positions (see tradeloom.runtime.replay_position) -----------------------------

    @property
    def replay_positions_topic(self) -> str:
        """Where replays' positions are kept: ``<prefix>replay_positions`` (one partition,
        compacted: the latest record of each key is what counts)."""
        return self.options.topic_name(REPLAY_POSITIONS)

    async def _keep_positions_topic(self) -> str:
        """The positions topic, created when missing (and again whenever the others are)."""
        topic = self.replay_positions_topic
        if topic not in self.link.own_topics:
            await self.link.add_topic(topic, 1, _POSITIONS_TOPIC_CONFIG)
        return topic

    async def read_replay_position(self, key: str) -> str | None:
        """The latest record keyed ``key`` on the positions topic, read from its start to
        its end offsets (the topic is created when missing)."""
        topic = await self._keep_positions_topic()
        timeout = self.options.operation_timeout_seconds
        consumer = AIOKafkaConsumer(**self.options.client_kwargs(), enable_auto_commit=False)
        try:
            async with asyncio.timeout(timeout * 3):
                await consumer.start()
                return await _latest_value(consumer, topic, key.encode())
        except TimeoutError:
            hint = (
                ""
                if self.options.create_topics
                else " (create_topics = false: create it, one partition, cleanup.policy=compact)"
            )
            raise BrokerSetupError(
                f"redpanda transport: could not read the replay positions on topic {topic!r} "
                f"within {timeout * 3:g}s{hint}"
            ) from None
        except KafkaError as exc:
            raise BrokerSetupError(
                f"redpanda transport: could not read the replay positions on topic {topic!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            await close_bounded(consumer.stop(), timeout)

    async def write_replay_position(self, key: str, text: str) -> None:
        """Write ``text`` keyed ``key`` to the positions topic once the broker acknowledged
        every event published so far; within ``operation_timeout_seconds``."""
        if self._producer is None:
            raise RuntimeError("the redpanda transport is not started")
        topic = await self._keep_positions_topic()
        async with asyncio.timeout(self.options.operation_timeout_seconds):
            await self.delivered()
            await self._producer.send_and_wait(topic, text.encode(), key=key.encode())

    @property
    def undelivered(self) -> int:
        """Events published but not yet acknowledged by the broker."""
        return len(self._outbox) + len(self._unconfirmed) + len(self._failed)

    async def delivered(self) -> None:
        """Wait until the broker acknowledged every event published so far. Raises what made
        the transport give up when it cannot deliver any more."""
        target = self._seq
        while self._lowest_pending() <= target:
            if self._failure is not None:
                raise self._failure
            progress = self._progress
            await progress.wait()

    def _lowest_pending(self) -> float:
        lowest: float = math.inf
        if self._failed:
            lowest = min(item.seq for item, _ in self._failed)
        if self._outbox:
            lowest = min(lowest, self._outbox[0].seq)
        heap = self._unconfirmed_heap
        while heap and heap[0] not in self._unconfirmed:
            heapq.heappop(heap)
        if heap:
            lowest = min(lowest, heap[0])
        return lowest

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _send_loop(self) -> None:
        producer = self._producer
        assert producer is not None
        try:
            while True:
                if self._failed:
                    await self._resend_failed()
                    continue
                if not self._outbox:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._outbox.popleft()
                try:
                    future = await producer.send(
                        item.topic, item.value, key=item.key, headers=item.headers
                    )
                except Exception as exc:
                    self._outbox.appendleft(item)
                    self._refuse_if_permanent(item, exc)
                    await self.link.recover(exc)
                    continue
                self._unconfirmed[item.seq] = item
                heapq.heappush(self._unconfirmed_heap, item.seq)
                future.add_done_callback(partial(self._on_delivery, item))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. ReconnectExhausted; run() raises it
            self.logger.error("delivery stopped: %s", exc)
            self._fail(exc)

    def _on_delivery(self, item: _Outgoing, future: asyncio.Future[Any]) -> None:
        if item.seq not in self._unconfirmed:
            return
        error = asyncio.CancelledError() if future.cancelled() else future.exception()
        del self._unconfirmed[item.seq]
        if error is None:
            self.stats.delivered += 1
        else:
            self._failed.append((item, error))
            self._wake.set()
        self._notify()

    def _refuse_if_permanent(self, item: _Outgoing, error: BaseException) -> None:
        """Raise when sending ``item`` again cannot help (a record too large, no permission
        for the topic): the transport then stops instead of retrying forever."""
        if _transient(error):
            return
        raise BrokerSetupError(
            f"redpanda transport: the broker refused an event for topic {item.topic!r}: "
            f"{type(error).__name__}: {error}"
        )

    async def _resend_failed(self) -> None:
        failed = sorted(self._failed, key=lambda entry: entry[0].seq)
        for item, error in failed:
            self._refuse_if_permanent(item, error)
        self._failed = []
        # Older than anything never sent: they go first, in their original order.
        self._outbox.extendleft(item for item, _ in reversed(failed))
        self.stats.resent += len(failed)
        self.logger.warning("%d event(s) not acknowledged; sending them again", len(failed))
        self._notify()
        await self.link.recover(failed[0][1])

    async def _deliver_bounded(self, what: str) -> None:
        if self._producer is None or self._sender is None or self._sender.done():
            if self.undelivered:
                self.logger.error("%s: %d event(s) could not be delivered", what, self.undelivered)
            return
        try:
            async with asyncio.timeout(self.options.operation_timeout_seconds):
                await self.delivered()
        except TimeoutError:
            self.logger.error(
                "%s: %d event(s) not acknowledged within %.1fs",
                what,
                self.undelivered,
                self.options.operation_timeout_seconds,
            )
        except Exception as exc:  # reported by run(); here only logged
            self.logger.error("%s: %d event(s) not delivered: %s", what, self.undelivered, exc)

    # -- consuming ------------------------------------------------------------------------------

    async def _consume(self, role: _Role) -> None:
        consumer = role.consumer
        assert consumer is not None
        options = self.options
        try:
            while not self._stopping.is_set():
                try:
                    batch = await consumer.getmany(
                        timeout_ms=options.poll_timeout_ms, max_records=options.max_batch
                    )
                except KafkaError as exc:
                    if not exc.retriable:
                        raise
                    # The watchdog runs the reconnection policy; polling just goes on.
                    self.logger.debug("role %s: poll failed: %s", role.role, exc)
                    await asyncio.sleep(options.poll_timeout_ms / 1000)
                    continue
                if batch or role.pending:
                    async with role.lock:
                        error = self._handle_batch(role, batch)
                        await self._commit(role)
                    if error is not None:
                        raise error
                await self._measure_lag(role)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # run() raises it after the others stop
            self._fail(exc)

    def _handle_batch(
        self, role: _Role, batch: dict[TopicPartition, list[Any]]
    ) -> Exception | None:
        """Handle every record; return the handler error that stops the role, if any (the
        positions of the records before it are recorded for commit)."""
        for partition, records in batch.items():
            for record in records:
                published = self._seq
                try:
                    self._handle(role, record)
                except Exception as exc:
                    if self.options.on_handler_error == "dead_letter":
                        self._reject_record(role, record, f"{exc}", type(exc).__name__)
                    else:
                        withdrawn = 0
                        if self._logical[record.topic] in role.decided_again:
                            withdrawn = self._withdraw_published_after(published)
                        self.logger.error(
                            "role %s: handling %s failed: %s%s",
                            role.role,
                            _location(record),
                            exc,
                            f" ({withdrawn} event(s) it published are not sent)"
                            if withdrawn
                            else "",
                        )
                        return exc
                role.pending[partition] = role.positions[partition] = record.offset + 1
        return None

    def _withdraw_published_after(self, seq: int) -> int:
        """Take back what was published after ``seq``: the output of a handling that failed,
        where handling the record again after a restart makes it again (see
        ``add_decided_again``); sent now, it would come twice. (Handling runs without an await,
        so all of it is still in the outbox.)"""
        withdrawn = 0
        outbox = self._outbox
        while outbox and outbox[-1].seq > seq:
            outbox.pop()
            withdrawn += 1
        self.stats.published -= withdrawn
        return withdrawn

    def _handle(self, role: _Role, record: Any) -> None:
        self.stats.consumed += 1
        boundary = self._logical[record.topic]
        value = record.value
        if not value:  # null, or no bytes at all
            self._reject_record(role, record, "empty record (no value)", "empty")
            return
        try:
            event = self.codec.decode(value)
        except DecodeError as exc:
            # Anything else the codec raises is handled by on_handler_error: a codec's bug
            # stops the role by default rather than set every record aside.
            self._reject_record(role, record, exc.reason, exc.error_type)
            return
        expected = EXPECTED_TYPES.get(boundary)
        if expected is not None and not isinstance(event, expected):
            names = " or ".join(cls.__name__ for cls in expected)
            self._reject_record(
                role,
                record,
                f"a {type(event).__name__} on the {boundary} topic, which carries {names}",
                "wrong_type",
            )
            return
        seen = role.seen
        if seen is not None and seen.seen(event.event_id):
            self.stats.duplicates += 1
            status = getattr(self, "status", None)
            if status is not None:
                status.duplicates_ignored += 1
            return
        if boundary == Topics.MARKET:
            self.clock.advance(event.ts)
        if role.revocation_hooks:
            role.key_partitions[(record.topic, record.key)] = record.partition
        for handler in role.handlers[boundary]:
            handler(boundary, event)
        if boundary in role.held_topics:  # it may wait: where its record is (_held_positions)
            place = (TopicPartition(record.topic, record.partition), record.offset)
            role.handled_at[event.event_id] = place

    def _reject_record(self, role: _Role, record: Any, reason: str, error_type: str) -> None:
        raw = record.value if record.value is not None else b""
        self.dead_letter(
            DeadLetter(
                source=f"redpanda transport, role {role.role} (group {role.group_id})",
                reason=reason,
                error_type=error_type,
                raw=bytes(raw),
                ts=self.clock.now(),
                location=_location(record),
                key=record.key,
            )
        )

    def _held_positions(self, role: _Role) -> dict[TopicPartition, int]:
        """The offset of the first record of each partition whose event the role still keeps
        waiting (``add_held_events``): no position past it is committed."""
        if not role.held_sources:
            return {}
        held: set[UUID] = set()
        for source in role.held_sources:
            held.update(source())
        for event_id, place in role.handled_at.items():
            if event_id in held:
                role.held_at[event_id] = place
        role.handled_at.clear()
        positions: dict[TopicPartition, int] = {}
        for event_id, (partition, offset) in list(role.held_at.items()):
            if event_id not in held:  # acted on since, or dropped at a rebalance
                del role.held_at[event_id]
            elif offset < positions.get(partition, offset + 1):
                positions[partition] = offset
        return positions

    async def _commit(self, role: _Role) -> None:
        """Commit the role's handled positions once their effects are delivered (and durable,
        per the role's barrier), none past an event still waiting. Call with ``role.lock``
        held."""
        if not role.pending or role.consumer is None:
            return
        held = self._held_positions(role)
        offsets = {
            partition: min(offset, held.get(partition, offset))
            for partition, offset in role.pending.items()
        }
        # A partition held back where it was committed already has nothing new to commit.
        offsets = {p: o for p, o in offsets.items() if role.committed.get(p) != o}
        if not offsets:
            return
        if not await self._effects_delivered(role):
            return
        if role.barrier is not None and not await role.barrier():
            self.logger.warning(
                "role %s: positions not committed: its effects are not durable yet", role.role
            )
            return
        try:
            async with asyncio.timeout(self.options.operation_timeout_seconds):
                await role.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced: these partitions may be another member's now. Their records
            # are delivered again from the last commit, and deduplicated.
            self.stats.commits_failed += 1
            self.logger.warning("role %s: commit refused after a rebalance: %s", role.role, exc)
            role.pending.clear()
            return
        except (KafkaError, TimeoutError, OSError) as exc:
            # Kept pending and tried again with the next poll; the watchdog runs the
            # reconnection policy.
            self.stats.commits_failed += 1
            self.logger.warning("role %s: commit failed, will retry: %r", role.role, exc)
            return
        self.stats.commits += 1
        role.committed.update(offsets)
        for partition, offset in offsets.items():
            if role.pending.get(partition) == offset:  # else held back: committed later
                del role.pending[partition]

    async def _measure_lag(self, role: _Role) -> None:
        """Publish how far behind the role is, per topic (``status.consumer_lag``), at most
        once a second: the broker's high watermark (from the last fetch) minus the next
        position to handle, summed over the partitions this process owns (also those it has
        not handled a record of since they were assigned)."""
        now = asyncio.get_running_loop().time()
        status = getattr(self, "status", None)
        if status is None or now - role.lag_measured < LAG_INTERVAL_SECONDS:
            return
        role.lag_measured = now
        consumer = role.consumer
        if consumer is None:
            return
        lag = status.consumer_lag
        link = self._link
        if link is not None and link.reconnecting:
            # The broker is out of reach: how far behind the role is cannot be known (its
            # last figure, 0 say, would stay for the whole outage).
            for key in [k for k in lag if k.startswith(f"{role.role}/")]:
                del lag[key]
            return
        totals: dict[str, int] = {}
        for partition in role.assigned & consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue  # not fetched from yet: its lag is not known
            position = role.positions.get(partition)
            if position is None:
                position = await _where_consumption_resumes(consumer, partition)
                if position is None:
                    continue
            key = f"{role.role}/{self._logical[partition.topic]}"
            totals[key] = totals.get(key, 0) + max(0, highwater - position)
        # A topic none of whose partitions this process owns any more (moved away in a
        # rebalance) has no lag here: its last figure would otherwise stay for good.
        for key in [k for k in lag if k.startswith(f"{role.role}/") and k not in totals]:
            del lag[key]
        lag.update(totals)

    async def _effects_delivered(self, role: _Role) -> bool:
        """Wait until what the role published is acknowledged. While stopping, wait at most
        ``operation_timeout_seconds``: the positions then stay uncommitted (redelivered later)."""
        waited = 0.0
        step = self.options.probe_interval_seconds
        while True:
            try:
                async with asyncio.timeout(step):
                    await self.delivered()
                return True
            except TimeoutError:
                waited += step
                if self._stopping.is_set() and waited >= self.options.operation_timeout_seconds:
                    self.logger.error(
                        "role %s: %d event(s) still unacknowledged at stop; positions left "
                        "uncommitted",
                        role.role,
                        self.undelivered,
                    )
                    return False


_POSITIONS_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    # Compaction keeps a key's latest record, but only in closed segments: a replay saving
    # every second would otherwise leave a restart a long topic to read.
    "segment.ms": str(3_600_000),
}


async def _latest_value(consumer: AIOKafkaConsumer, topic: str, key: bytes) -> str | None:
    """The value of the latest record keyed ``key`` on ``topic``: every partition read up to
    the end offsets taken first (what was written after is not waited for)."""
    found = consumer.partitions_for_topic(topic)
    while not found:  # metadata of a topic created a moment ago
        await consumer.topics()
        found = consumer.partitions_for_topic(topic)
        if not found:
            await asyncio.sleep(0.05)
    partitions = [TopicPartition(topic, number) for number in sorted(found)]
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    await consumer.seek_to_beginning(*partitions)
    latest: bytes | None = None  # a key's records are in one partition, in order
    left = {partition for partition in partitions if ends[partition] > 0}
    while left:
        batches = await consumer.getmany(*left, timeout_ms=200)
        for records in batches.values():
            for record in records:
                if record.key == key:
                    latest = record.value  # None: a tombstone, the position removed
        for partition in list(left):
            if await consumer.position(partition) >= ends[partition]:
                left.discard(partition)
    return None if latest is None else latest.decode(errors="replace")


async def _where_consumption_resumes(consumer: AIOKafkaConsumer, partition: Any) -> int | None:
    """The next offset the consumer hands out from ``partition``: the committed (or reset)
    position of a partition none of whose records were handled since it was assigned. None
    when it is not known at once (being reset) or the partition has moved on meanwhile."""
    try:
        async with asyncio.timeout(_POSITION_WAIT_SECONDS):
            return int(await consumer.position(partition))
    except (TimeoutError, KafkaError):
        return None


_POSITION_WAIT_SECONDS = 0.05


def _transient(error: BaseException) -> bool:
    """Whether sending again may succeed: connection trouble, timeouts, leadership moves."""
    if isinstance(error, KafkaTimeoutError | KafkaConnectionError | TimeoutError | OSError):
        return True
    if isinstance(error, asyncio.CancelledError):
        return True
    return isinstance(error, KafkaError) and bool(error.retriable)


def _ignore(letter: DeadLetter) -> None:
    """Dead letters of a transport used outside a pipeline: only written to the topic."""


def _location(record: Any) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def _partitions(partitions: Any) -> str:
    by_topic: dict[str, list[int]] = {}
    for partition in partitions:
        by_topic.setdefault(partition.topic, []).append(partition.partition)
    return ", ".join(
        f"{topic}[{','.join(map(str, sorted(numbers)))}]"
        for topic, numbers in sorted(by_topic.items())
    )


__all__ = ["ReconnectExhausted", "RedpandaTransport", "TransportStats"]
