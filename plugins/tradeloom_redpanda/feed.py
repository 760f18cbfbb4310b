"""The ``redpanda`` feed: market ticks from a Kafka-protocol topic, acknowledged only once the
pipeline has delivered them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import attrs
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from tradeloom.components import Codec, DeadLetter, Feed, FeedContext
from tradeloom.errors import DecodeError, as_decode_error
from tradeloom.events import Bar, MarketEvent, MarketTick
from tradeloom.ids import stable_id
from tradeloom_redpanda.connection import LAG_INTERVAL_SECONDS, BrokerLink, close_bounded
from tradeloom_redpanda.options import FeedOptions
from tradeloom_redpanda.ticks import TickMapping


@attrs.define
class FeedStats:
    """Counters of one feed instance."""

    consumed: int = 0
    events: int = 0
    bad_records: int = 0
    commits: int = 0


class _Moved(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forgets the positions of partitions that move to another feed of the group: they are
    committed after each batch already (or not at all, when not durable), and kept they would
    count in the lag if a partition came back."""

    def __init__(self, feed: RedpandaFeed) -> None:
        self.feed = feed

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:  # what was handed out and delivered but not committed yet (a commit that failed)
            await self.feed._acknowledge()
        except Exception as exc:  # the rebalance must go on; the new owner reads them again
            self.feed.logger.warning("feed positions not committed before a rebalance: %r", exc)
        for partition in revoked:
            self.feed._handed_out.pop(partition, None)
            self.feed._committed.pop(partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


DEFAULT_GROUP = "tradeloom.feed"
"""The feed's consumer group when neither ``group_id`` nor the transport names one."""


class RedpandaFeed(Feed):
    """Reads market ticks from ``topic`` through the consumer group ``group_id`` (unset: the
    one the pipeline's transport names for the feed role, ``group_prefix + "feed"`` with the
    ``redpanda`` transport; else ``tradeloom.feed``).

    ``format = "tradeloom"`` reads events in the pipeline codec's format (the stock codec's
    JSON: ``MarketTick`` or ``Bar``); ``format = "json"`` reads plain JSON ticks through the
    ``fields`` mapping (see :class:`~tradeloom_redpanda.ticks.TickMapping`). A record that
    cannot be read is reported as bad input (the redpanda transport writes it to the
    dead-letter topic) and skipped.

    Positions are committed after each batch, once the transport has delivered the batch's
    events (at least once: a crash in between makes the broker deliver them again). Several
    feed processes in one group share the topic's partitions. Broker outages follow the
    pipeline's ``[reconnect]`` settings; when the attempts run out the iterator raises
    :class:`~tradeloom.backoff.ReconnectExhausted` and the pipeline drains and stops.
    """

    def __init__(self, **params: Any) -> None:
        self.options = FeedOptions.from_params("redpanda feed", params)
        self.mapping = TickMapping(self.options.field_paths(), self.options.ts_unit)
        self.stats = FeedStats()
        self.logger = logging.getLogger("tradeloom.redpanda.feed")
        self._transport: Any = None
        self._consumer: AIOKafkaConsumer | None = None
        self._link: BrokerLink | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._handed_out: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lag_reported = -LAG_INTERVAL_SECONDS
        self._closed = False

    def __repr__(self) -> str:
        return f"RedpandaFeed({self.options.describe()}, topic={self.options.topic!r})"

    def attach_transport(self, transport: Any) -> None:
        """Called by the pipeline: positions are committed once ``transport`` has delivered
        what was published (when it can tell, through ``delivered()``)."""
        self._transport = transport

    # -- reading --------------------------------------------------------------------------------

    def events(self, ctx: FeedContext) -> AsyncIterator[MarketEvent]:
        return self._events(ctx)

    async def _events(self, ctx: FeedContext) -> AsyncIterator[MarketEvent]:
        self.logger = ctx.logger
        options = self.options
        codec = ctx.codec
        if codec is None and options.format == "tradeloom":
            from tradeloom_decimal.codec import DecimalJsonCodec

            codec = DecimalJsonCodec()
        self._link = BrokerLink(
            f"redpanda feed ({options.topic})",
            options,
            [options.topic],
            ctx.reconnect,
            self.logger,
            reconnecting=ctx.reconnecting,
        )
        await self._link.connect()
        group_id = options.group_id or ctx.consumer_group or DEFAULT_GROUP
        consumer = AIOKafkaConsumer(
            **options.consumer_kwargs(),
            group_id=group_id,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        await consumer.start()
        consumer.subscribe([options.topic], listener=_Moved(self))
        self._consumer = consumer
        self._watchdog = asyncio.get_running_loop().create_task(self._link.watch())
        self.logger.info(
            "reading %s from %s as group %s", options.topic, options.describe(), group_id
        )
        while True:
            if self._watchdog.done() and not self._watchdog.cancelled():
                error = self._watchdog.exception()
                if error is not None:
                    raise error
            try:
                batch = await consumer.getmany(
                    timeout_ms=options.poll_timeout_ms, max_records=options.max_batch
                )
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                # The watchdog runs the reconnection policy; polling just goes on.
                self.logger.debug("feed poll failed: %s", exc)
                await asyncio.sleep(options.poll_timeout_ms / 1000)
                continue
            if not batch:
                self._report_lag(ctx, consumer)
                continue
            for partition, records in batch.items():
                for record in records:
                    self.stats.consumed += 1
                    event = self._read(record, ctx, codec)
                    self._handed_out[partition] = record.offset + 1
                    if event is not None:
                        self.stats.events += 1
                        yield event
            await self._acknowledge()
            self._report_lag(ctx, consumer)

    def _report_lag(self, ctx: FeedContext, consumer: AIOKafkaConsumer) -> None:
        """Tell the runtime how many records of its partitions the feed has not handed out yet
        (the high watermark of the last fetch minus the next offset), at most once a second."""
        now = time.monotonic()
        if now - self._lag_reported < LAG_INTERVAL_SECONDS:
            return
        self._lag_reported = now
        if self._link is not None and self._link.reconnecting:
            # Its figures are from before the broker went away: unknown now, not "0 behind".
            ctx.report_lag({})
            return
        behind = 0
        measured = False
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            position = self._handed_out.get(partition)
            if highwater is None or position is None:
                continue  # nothing fetched or handed out yet: unknown, not zero
            behind += max(0, highwater - position)
            measured = True
        ctx.report_lag({self.options.topic: behind} if measured else {})

    def _read(self, record: Any, ctx: FeedContext, codec: Codec | None) -> MarketEvent | None:
        value = record.value
        try:
            if not value:  # null, or no bytes at all
                raise DecodeError("empty record (no value)", error_type="empty")
            if self.options.format == "json":
                return self._json_tick(record, ctx)
            assert codec is not None
            # What else a codec raises stops the feed: a codec's bug, not the record's.
            event = codec.decode(value)
            if not isinstance(event, MarketTick | Bar):
                raise DecodeError(
                    f"a {type(event).__name__} is not market data (MarketTick or Bar)",
                    error_type="wrong_type",
                )
            return event
        except DecodeError as exc:
            self.stats.bad_records += 1
            ctx.report_bad_input(
                DeadLetter(
                    source=f"redpanda feed ({self.options.topic})",
                    reason=exc.reason,
                    error_type=exc.error_type,
                    raw=bytes(value or b""),
                    ts=ctx.clock.now(),
                    location=f"{record.topic}[{record.partition}]@{record.offset}",
                    key=record.key,
                )
            )
            return None

    def _json_tick(self, record: Any, ctx: FeedContext) -> MarketTick:
        # The same id each time the record is read, so a repeat is recognised (asked for
        # before reading it: the id generator's failure is not the record's).
        place = f"{record.topic}\x00{record.partition}\x00{record.offset}".encode()
        record_id = stable_id(ctx.ids, place, record.timestamp)
        try:
            record_ts = None
            if self.options.ts_source == "record":
                record_ts = datetime.fromtimestamp(record.timestamp / 1000, UTC)
            return self.mapping.decode(record.value, ctx.ids, record_ts, record_id)
        except Exception as exc:
            # Other systems' JSON, read by tradeloom's own mapping: whatever it raises on a
            # record (a case it does not word) is that record's fault, set aside rather than
            # stopping the feed on it again after every restart.
            raise as_decode_error(exc) from None

    async def _acknowledge(self) -> None:
        """Commit what was handed out, once the transport delivered it (and, in one process,
        once its effects are durable: see ``_delivered``)."""
        if await self._delivered():
            await self._commit()

    async def _delivered(self) -> bool:
        """Whether the transport delivered what the pipeline published (waiting for a broker's
        acknowledgements). An in-process transport tells whether the effects are durable: a
        portfolio whose journal cannot be written makes it False, and nothing is committed."""
        delivered = getattr(self._transport, "delivered", None)
        if delivered is None:
            return True
        return await delivered() is not False

    async def _commit(self) -> None:
        consumer = self._consumer
        offsets = {
            tp: offset
            for tp, offset in self._handed_out.items()
            if self._committed.get(tp) != offset
        }
        if consumer is None or not offsets:
            return
        try:
            async with asyncio.timeout(self.options.operation_timeout_seconds):
                await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            self.logger.warning("feed positions not committed after a rebalance: %s", exc)
            for partition in offsets:
                self._handed_out.pop(partition, None)
            return
        except (KafkaError, TimeoutError, OSError) as exc:
            # Committed with the next batch (or at close); the watchdog handles reconnecting.
            self.logger.warning("feed positions not committed, will retry: %r", exc)
            return
        self.stats.commits += 1
        self._committed.update(offsets)

    # -- closing --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what the pipeline delivered, leave the group, disconnect. Safe to call twice
        and before :meth:`events`."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        undelivered = getattr(self._transport, "undelivered", 0)
        if undelivered:
            self.logger.error(
                "%d event(s) were not delivered: feed positions left uncommitted (they are "
                "read again on restart)",
                undelivered,
            )
        else:
            try:
                if await self._delivered():
                    await self._commit()
                else:
                    self.logger.error(
                        "what the events made (fills) is not all saved: feed positions left "
                        "uncommitted (they are read again on restart)"
                    )
            except Exception as exc:  # read again on restart
                self.logger.error("final commit of feed positions failed: %s", exc)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            error = await close_bounded(consumer.stop(), self.options.operation_timeout_seconds)
            if isinstance(error, Exception):
                self.logger.warning("feed consumer did not stop cleanly: %s", error)
        if self._link is not None:
            await self._link.close()
