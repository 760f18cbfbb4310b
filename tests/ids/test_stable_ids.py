"""Ids of inputs with an identity of their own (a record's place in a log): the same each read."""

from __future__ import annotations

from uuid import UUID, uuid4

from tradeloom.ids import derived_uuid7, stable_id
from tradeloom.testing._support import RecordingIds
from tradeloom_uuid7.generator import Uuid7Generator

MS = 1_715_002_200_250


def test_the_same_input_has_the_same_id_and_every_other_input_another() -> None:
    one = derived_uuid7(b"ticks\x000\x005", MS)
    assert derived_uuid7(b"ticks\x000\x005", MS) == one
    others = {
        derived_uuid7(b"ticks\x000\x006", MS),
        derived_uuid7(b"ticks\x001\x005", MS),
        derived_uuid7(b"ticks\x000\x005", MS + 1),  # a topic made again: offsets start over
    }
    assert one not in others and len(others) == 3


def test_a_derived_id_is_a_uuid7_of_the_inputs_time() -> None:
    derived = derived_uuid7(b"x", MS)
    assert (derived.version, derived.variant) == (7, "specified in RFC 4122")
    assert derived.int >> 80 == MS
    assert derived_uuid7(b"a", MS + 1) > derived_uuid7(b"b", MS)  # later inputs sort later
    for unknown in (None, -1, 1 << 48):
        assert derived_uuid7(b"x", unknown).int >> 80 == 0


def test_the_stock_and_the_test_generators_derive_the_same_ids() -> None:
    assert Uuid7Generator().id_for(b"x", MS) == derived_uuid7(b"x", MS)
    recording = RecordingIds()
    assert stable_id(recording, b"x", MS) == derived_uuid7(b"x", MS)
    assert derived_uuid7(b"x", MS) in recording.minted  # taken from the context's generator


def test_a_generator_without_id_for_mints_a_new_id() -> None:
    class Plain:
        def new_id(self) -> UUID:
            return uuid4()

    first, second = stable_id(Plain(), b"x", MS), stable_id(Plain(), b"x", MS)
    assert first != second and first.version == 4
