"""Ids of inputs that have an identity of their own: the same id each time one is read.

A feed reading a log (a Kafka topic) reads again from its group's last commit after a crash, or
when its partitions move to another member. A fresh id per read made each repeat a new event
downstream, traded on again; an id derived from the record's place in the log lets a process
that has seen it recognise the repeat and skip it (each remembers the last ``[pipeline]
dedupe_window`` ids, in memory: not across its own restart).
"""

from __future__ import annotations

import hashlib
from uuid import UUID

from tradeloom.components import IdGenerator

_MAX_MS = (1 << 48) - 1
_RAND_B = (1 << 62) - 1


def derived_uuid7(source: bytes, timestamp_ms: int | None) -> UUID:
    """A UUIDv7 (RFC 9562) whose time is ``timestamp_ms`` (0 when unknown or out of its 48
    bits) and whose 74 other bits are a hash of ``source``: the same for the same arguments,
    and ids of later inputs sort later, as minted ones do."""
    ms = timestamp_ms if timestamp_ms is not None and 0 <= timestamp_ms <= _MAX_MS else 0
    digest = int.from_bytes(hashlib.blake2b(source, digest_size=10).digest(), "big")
    rand_a = digest >> 68  # 12 bits
    rand_b = digest & _RAND_B  # 62 bits
    return UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


def stable_id(ids: IdGenerator, source: bytes, timestamp_ms: int | None) -> UUID:
    """The id of an input identified by ``source`` (say, a record's topic, partition and
    offset) and made at ``timestamp_ms``: the generator's ``id_for(source, timestamp_ms)`` when
    it has one, the same each time; else a new id (a repeat is then not recognised)."""
    id_for = getattr(ids, "id_for", None)
    if id_for is not None:
        derived: UUID = id_for(source, timestamp_ms)
        return derived
    return ids.new_id()
