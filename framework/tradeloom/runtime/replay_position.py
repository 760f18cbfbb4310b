"""Where a replay published to a broker got to, so that a restarted feed role goes on from there.

A replay gives the same events from the start of its files on every run. Published to a broker
(the ``redpanda`` transport), they stay there for the consuming roles: a feed role restarted
after a crash, a deploy or a SIGTERM would read its files from the start, and every consuming
role would trade them again. So a live run that publishes a replay through a transport that
keeps positions (:attr:`~tradeloom.runtime.transport.Transport.keeps_replay_positions`) saves
its *position* there: how many of the replay's events the broker acknowledged, at most every
:data:`SAVE_INTERVAL_SECONDS` and at a drained stop. A restart hands the feed that number
(:attr:`~tradeloom.components.FeedContext.skip_events`) and the feed goes on after them.

A crash (``kill -9``) loses what was published after the last save: those events are published
again. Their ids are numbered from a base kept in the position (:class:`NumberedIds`), so each
is published again with the id it had, and a consuming role that already took it skips it as a
repeat (within its ``[pipeline] dedupe_window``).

A position belongs to one replay: a digest of what the feed says identifies its events
(:meth:`~tradeloom.components.Feed.replay_identity`; the ``replay`` feed's files, the start of
their contents and how they are read, not its pace). Other data starts from the first event.
``tradeloom run --replay-from-start`` starts from the first event in any case.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
import attrs

from tradeloom.components import Feed, IdGenerator
from tradeloom.errors import CorruptStateError, TradeloomError
from tradeloom.ids import derived_uuid7
from tradeloom.runtime.transport import Transport

SAVE_INTERVAL_SECONDS = 1.0
"""How often a running replay saves its position (when it moved). A crash publishes again at
most what was acknowledged since: with the default ``dedupe_window`` of 100,000 ids, a
consuming role recognises every repeat of a replay published at up to 100,000 events a second."""

_NUMBER_BITS = 40
"""The low bits of a numbered id that count the events: 2**40 events from one base."""

_RECORD_VERSION = 1


@attrs.frozen
class ReplayPosition:
    """How far a replay's earlier runs published it."""

    published: int
    """Events of the replay, from its first, that the broker acknowledged."""
    id_base: int
    """The id of the replay's first event, as an int; event ``n`` (from 0) has ``id_base + n``."""


class NumberedIds:
    """Ids for a replay's events, ``base + n`` for its ``n``-th event (from 0): the same
    event gets the same id in every run that publishes it. Handed to a feed whose position is
    kept, starting at the first event it publishes (``first``)."""

    def __init__(self, base: int, first: int) -> None:
        self._next = base + first
        self._end = base + (1 << _NUMBER_BITS)

    def new_id(self) -> UUID:
        return self.new_ids(1)[0]

    def new_ids(self, count: int) -> list[UUID]:
        start = self._next
        if start + count > self._end:
            raise OverflowError(f"a replay numbers at most 2**{_NUMBER_BITS} events")
        self._next = start + count
        return [UUID(int=value) for value in range(start, start + count)]

    def id_for(self, source: bytes, timestamp_ms: int | None) -> UUID:
        return derived_uuid7(source, timestamp_ms)

    def __repr__(self) -> str:
        return f"NumberedIds(next={UUID(int=self._next)})"


def id_base(ids: IdGenerator) -> int:
    """A new base for numbered ids: a fresh id of the run's generator, its low bits cleared
    (where a UUIDv7 holds random bits; its time, version and variant stay)."""
    return ids.new_id().int >> _NUMBER_BITS << _NUMBER_BITS


def feed_key(feed: Feed, feed_settings: Any) -> str:
    """What a position belongs to: a digest of the feed's type and its
    :meth:`~tradeloom.components.Feed.replay_identity`; for a feed without one, of the
    configuration it was built from (the ``[feed]`` table, ``feed_settings``), or else of its
    ``repr``."""
    identity = feed.replay_identity()
    if identity is None and feed_settings is not None:
        identity = json.dumps(feed_settings, sort_keys=True, default=str)
    if identity is None:
        identity = repr(feed)
    described = f"{type(feed).__module__}.{type(feed).__qualname__}\n{identity}"
    return "replay-" + hashlib.sha256(described.encode()).hexdigest()[:32]


def encode_position(position: ReplayPosition, now: datetime) -> str:
    return json.dumps(
        {
            "version": _RECORD_VERSION,
            "published": position.published,
            "id_base": str(UUID(int=position.id_base)),
            "saved_at": now.isoformat(),
        },
        sort_keys=True,
    )


def decode_position(text: str, where: str) -> ReplayPosition:
    """The position saved as ``text``; a :class:`~tradeloom.errors.CorruptStateError` naming
    ``where`` and the way out when it cannot be read."""
    try:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if record.get("version") != _RECORD_VERSION:
            raise ValueError(f"version {record.get('version')!r}, not {_RECORD_VERSION}")
        published = record["published"]
        if type(published) is not int or published < 0:
            raise ValueError(f"published is {published!r}, not a count")
        base = UUID(record["id_base"]).int
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CorruptStateError(
            f"{where}: the saved position of this replay cannot be read ({detail}): "
            f"{text[:200]!r}; run with --replay-from-start to publish the replay from its "
            "first event"
        ) from None
    return ReplayPosition(published=published, id_base=base)


class ReplayPositionKeeper:
    """Loads a replay's position from the transport at the start of a run, and saves it as
    the run publishes: :meth:`save` with the number of events taken from the feed so far."""

    def __init__(
        self,
        transport: Transport,
        key: str,
        ids: IdGenerator,
        logger: logging.Logger,
    ) -> None:
        self.transport = transport
        self.key = key
        self._ids = ids
        self.logger = logger
        self.position = ReplayPosition(published=0, id_base=0)
        self._saved = 0
        self._lock = anyio.Lock()
        self._failing = False

    async def load(self, *, from_start: bool) -> None:
        """Read the position an earlier run saved (unless ``from_start``); a replay never
        published starts at its first event with a new id base."""
        where = f"{self.transport!r}, position {self.key}"
        text = None if from_start else await self.transport.read_replay_position(self.key)
        if text is None:
            self.position = ReplayPosition(published=0, id_base=id_base(self._ids))
            if from_start:
                self.logger.info("replay: publishing from the first event (--replay-from-start)")
            # Saved before the first event goes out: a crash before the first periodic save
            # still leaves the base, and the events published again keep their ids.
            try:
                await self.transport.write_replay_position(
                    self.key, encode_position(self.position, _now())
                )
            except Exception as exc:
                raise TradeloomError(
                    f"{where}: could not save the replay's position before publishing: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return
        self.position = decode_position(text, where)
        self._saved = self.position.published
        self.logger.info(
            "replay: an earlier run published its first %d event(s); going on after them, "
            "with the ids it gave (--replay-from-start publishes from the first, as new events)",
            self.position.published,
        )

    @property
    def skip_events(self) -> int:
        return self.position.published

    def ids(self) -> NumberedIds:
        """Ids for the events after the position."""
        return NumberedIds(self.position.id_base, self.position.published)

    async def save(self, taken: int) -> bool:
        """Save that ``taken`` events were taken from the feed in this run (after the skipped
        ones), once the broker acknowledged them. A failure is logged, not raised: the next
        save tries again, and a restart meanwhile publishes the later events again."""
        published = self.position.published + taken
        async with self._lock:
            if published <= self._saved:
                return True
            text = encode_position(attrs.evolve(self.position, published=published), _now())
            try:
                await self.transport.write_replay_position(self.key, text)
            except Exception as exc:  # the transport's, or its broker client's
                log = self.logger.debug if self._failing else self.logger.warning
                self._failing = True
                log(
                    "replay: could not save its position (%d events published): %s: %s; a "
                    "restart publishes again what came after the last position saved",
                    published,
                    type(exc).__name__,
                    exc,
                )
                return False
            if self._failing:
                self.logger.info("replay: its position is saved again (%d events)", published)
            self._failing = False
            self._saved = published
            return True

    def say_if_nothing_was_left(self, taken: int) -> None:
        """The replay ended: say so when it had nothing after what earlier runs published."""
        if self.position.published and not taken:
            self.logger.info(
                "replay: it has no event after the %d an earlier run published: it was "
                "published whole (--replay-from-start publishes it again, as new events)",
                self.position.published,
            )

    async def keep(self, taken: Callable[[], int], interval: float = SAVE_INTERVAL_SECONDS) -> None:
        """Save the position every ``interval`` seconds while the run lasts (a task of its own:
        a save waits for the broker's acknowledgements)."""
        while True:
            await anyio.sleep(interval)
            await self.save(taken())


def _now() -> datetime:
    return datetime.now(UTC)
