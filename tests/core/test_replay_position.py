"""The position a replay published to a broker keeps: numbered ids, the record, its errors.
A real broker keeping it across feed-role restarts: test_redpanda_replay_position.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest

from tradeloom.components import Feed, FeedContext
from tradeloom.errors import CorruptStateError, TradeloomError
from tradeloom.events import MarketEvent
from tradeloom.runtime.replay_position import (
    NumberedIds,
    ReplayPosition,
    ReplayPositionKeeper,
    decode_position,
    encode_position,
    feed_key,
    id_base,
)
from tradeloom.runtime.transport import Transport
from tradeloom_memory.transport import MemoryTransport
from tradeloom_replay.feed import ReplayFeed
from tradeloom_uuid7.generator import Uuid7Generator

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
COLUMNS = {"ts": "ts", "last_price": "price"}
TICKS = "ts,price\n2024-01-02T10:00:00Z,100.5\n2024-01-02T10:00:01Z,101\n"


def test_numbered_ids_give_each_event_the_same_id_in_every_run() -> None:
    base = id_base(Uuid7Generator())
    first_run = NumberedIds(base, 0).new_ids(10)
    restarted = NumberedIds(base, 4)  # an earlier run published the first four
    again = [restarted.new_id(), *restarted.new_ids(5)]
    assert again == first_run[4:]
    assert first_run == sorted(first_run) and len(set(first_run)) == 10


def test_a_numbered_id_is_a_uuid7_of_the_time_its_base_was_made() -> None:
    before_ms = time.time_ns() // 1_000_000
    base = id_base(Uuid7Generator())
    event_id = NumberedIds(base, 12345).new_id()
    assert event_id.version == 7 and event_id.variant == "specified in RFC 4122"
    assert event_id.int >> 80 >= before_ms  # its time: when the base was made (or later)
    assert event_id.int >> 80 == base >> 80


def test_numbered_ids_end_before_they_would_run_into_the_next_base() -> None:
    ids = NumberedIds(id_base(Uuid7Generator()), (1 << 40) - 2)
    assert len(ids.new_ids(2)) == 2
    with pytest.raises(OverflowError, match="at most 2\\*\\*40 events"):
        ids.new_id()


def test_a_position_survives_its_record() -> None:
    position = ReplayPosition(published=1_234_567, id_base=id_base(Uuid7Generator()))
    text = encode_position(position, NOW)
    assert json.loads(text)["saved_at"] == NOW.isoformat()
    assert decode_position(text, "here") == position


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("{not json", "Expecting property name"),
        ("[1, 2]", "not a JSON object"),
        ('{"version": 2, "published": 1, "id_base": "x"}', "version 2, not 1"),
        ('{"version": 1, "published": -1, "id_base": "x"}', "published is -1, not a count"),
        ('{"version": 1, "published": "12", "id_base": "x"}', "published is '12', not a count"),
        ('{"version": 1, "published": true, "id_base": "x"}', "published is True, not a count"),
        ('{"version": 1, "published": 3}', "missing 'id_base'"),
        ('{"version": 1, "published": 3, "id_base": "nope"}', "badly formed hexadecimal"),
    ],
)
def test_an_unreadable_position_says_where_and_the_way_out(text: str, detail: str) -> None:
    with pytest.raises(CorruptStateError) as raised:
        decode_position(text, "broker x, position replay-1")
    message = str(raised.value)
    assert message.startswith("broker x, position replay-1: the saved position of this replay")
    assert detail in message
    assert message.endswith(
        "run with --replay-from-start to publish the replay from its first event"
    )


def _replay(path: Path, **params: Any) -> ReplayFeed:
    return ReplayFeed(path=str(path), instrument="X", columns=COLUMNS, **params)


def test_a_position_belongs_to_the_replays_data_not_its_pace(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(TICKS)
    key = feed_key(_replay(path), None)
    assert key.startswith("replay-")
    assert feed_key(_replay(path), {"name": "replay", "params": {"whatever": 1}}) == key
    assert feed_key(_replay(path, speed=60, max_wait_seconds=1), None) == key
    assert feed_key(_replay(path, timezone="Europe/Paris"), None) != key  # read otherwise
    copy = tmp_path / "copy.csv"
    copy.write_text(TICKS)
    assert feed_key(_replay(copy), None) != key  # another file
    path.write_text(TICKS.replace("100.5", "100.6"))  # written anew at the same path
    assert feed_key(_replay(path), None) != key


class Configured(Feed):
    """A feed with no replay identity of its own."""

    replays_from_start = True

    def events(self, ctx: FeedContext) -> Iterator[MarketEvent]:
        return iter(())

    def __repr__(self) -> str:
        return "Configured()"


def test_a_feed_without_an_identity_is_known_by_its_configuration() -> None:
    params = {"path": "a.csv", "format": "yahoo", "instrument": "A"}
    one = {"name": "mine", "params": params}
    reordered = {"params": dict(reversed(params.items())), "name": "mine"}
    other = {"name": "mine", "params": {**params, "path": "b.csv"}}
    assert feed_key(Configured(), one) == feed_key(Configured(), reordered)
    assert feed_key(Configured(), one) != feed_key(Configured(), other)
    # Given in code, without a configuration: by its repr.
    assert feed_key(Configured(), None) == feed_key(Configured(), None)
    assert feed_key(Configured(), None) != feed_key(Configured(), one)


def test_transports_keep_no_positions_unless_they_say_so() -> None:
    memory = MemoryTransport()
    assert memory.keeps_replay_positions is False
    with pytest.raises(NotImplementedError, match="MemoryTransport keeps no replay positions"):
        anyio.run(memory.read_replay_position, "replay-1")
    with pytest.raises(NotImplementedError):
        anyio.run(Transport.write_replay_position, memory, "replay-1", "{}")


class KeepingTransport(MemoryTransport):
    """An in-process transport that keeps replay positions in a dict, or fails to."""

    keeps_replay_positions = True

    def __init__(self) -> None:
        super().__init__()
        self.positions: dict[str, str] = {}
        self.writes: list[int] = []
        self.failing: Exception | None = None

    async def read_replay_position(self, key: str) -> str | None:
        return self.positions.get(key)

    async def write_replay_position(self, key: str, text: str) -> None:
        if self.failing is not None:
            raise self.failing
        self.positions[key] = text
        self.writes.append(json.loads(text)["published"])


def _keeper(transport: KeepingTransport) -> ReplayPositionKeeper:
    return ReplayPositionKeeper(
        transport, "replay-1", Uuid7Generator(), logging.getLogger("test.replay_position")
    )


def test_a_new_replay_saves_its_id_base_before_its_first_event() -> None:
    transport = KeepingTransport()
    keeper = _keeper(transport)
    anyio.run(lambda: keeper.load(from_start=False))
    assert keeper.skip_events == 0
    assert transport.writes == [0]
    stored = decode_position(transport.positions["replay-1"], "here")
    assert stored.id_base == keeper.position.id_base
    assert keeper.ids().new_id() == UUID(int=stored.id_base)


def test_a_restart_goes_on_after_the_saved_count_with_the_same_ids() -> None:
    transport = KeepingTransport()
    first = _keeper(transport)
    anyio.run(lambda: first.load(from_start=False))
    first_ids = first.ids().new_ids(10)
    assert anyio.run(first.save, 4)
    assert anyio.run(first.save, 3) and transport.writes == [0, 4]  # never backwards
    second = _keeper(transport)
    anyio.run(lambda: second.load(from_start=False))
    assert second.skip_events == 4
    assert second.ids().new_ids(6) == first_ids[4:]
    assert anyio.run(second.save, 2)  # two more events in this run
    assert decode_position(transport.positions["replay-1"], "here").published == 6


def test_replaying_from_the_start_takes_a_new_base_and_ignores_what_was_saved() -> None:
    transport = KeepingTransport()
    transport.positions["replay-1"] = "{not even json"
    keeper = _keeper(transport)
    anyio.run(lambda: keeper.load(from_start=True))
    assert keeper.skip_events == 0
    assert decode_position(transport.positions["replay-1"], "here").published == 0


def test_an_unreadable_saved_position_stops_the_load() -> None:
    transport = KeepingTransport()
    transport.positions["replay-1"] = '{"version": 1}'
    with pytest.raises(CorruptStateError, match="missing 'published'"):
        anyio.run(lambda: _keeper(transport).load(from_start=False))


def test_a_position_that_cannot_be_saved_first_stops_the_load() -> None:
    transport = KeepingTransport()
    transport.failing = TimeoutError("no answer")
    with pytest.raises(TradeloomError, match="could not save the replay's position before"):
        anyio.run(lambda: _keeper(transport).load(from_start=False))


def test_a_failing_save_is_said_once_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    transport = KeepingTransport()
    keeper = _keeper(transport)
    anyio.run(lambda: keeper.load(from_start=False))
    transport.failing = OSError("broker gone")
    caplog.set_level(logging.DEBUG, "test.replay_position")
    assert not anyio.run(keeper.save, 5)
    assert not anyio.run(keeper.save, 7)
    levels = [r.levelname for r in caplog.records if "could not save" in r.message]
    assert levels == ["WARNING", "DEBUG"]
    assert "OSError: broker gone" in caplog.records[0].message
    transport.failing = None
    assert anyio.run(keeper.save, 7)
    assert transport.writes == [0, 7]
    assert "its position is saved again (7 events)" in caplog.text
