"""The uuid7 generator's per-id fast path: the same ids as the general computation."""

from __future__ import annotations

import itertools
import os
import pickle
import time
import uuid

from tradeloom_uuid7 import generator
from tradeloom_uuid7.generator import Uuid7Generator


def _future_ms() -> int:
    # Ahead of the wall clock, so a state whose last id is there stays within that millisecond.
    # Tests use their own _State: the process-wide one must not be moved into the future.
    return time.time_ns() // 1_000_000 + 60_000


def test_ids_are_plain_version_7_uuids() -> None:
    ids = [Uuid7Generator().new_id() for _ in range(20_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    for value in ids[:100]:
        assert type(value) is uuid.UUID
        assert value.version == 7 and value.variant == uuid.RFC_4122
        same = uuid.UUID(str(value))
        assert value == same and hash(value) == hash(same)
        assert value.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(value)) == value


def test_a_step_that_overflows_rand_b_carries_into_rand_a() -> None:
    state = generator._State()
    ms = _future_ms()
    rand_a = 5
    state.last = generator._compose(ms, (rand_a << 62) | (generator._RAND_B_MASK - 3))
    first, second = uuid.UUID(int=state.next_value()), uuid.UUID(int=state.next_value())
    assert first.int >> 80 == ms and second.int >> 80 == ms
    assert (first.int >> 64) & generator._RAND_A_MASK == rand_a + 1
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first < second


def test_within_a_millisecond_each_id_is_the_last_plus_a_random_step() -> None:
    state = generator._State()
    ms = _future_ms()
    state.last = start = generator._compose(ms, 12345)
    values = [state.next_value() for _ in range(3000)]  # more than one read of random steps
    steps = [b - a for a, b in itertools.pairwise([start, *values])]
    assert all(1 <= step <= 2**generator._STEP_BITS for step in steps)
    assert len(set(steps)) > 2900  # random, not a counter
    assert all(value >> 80 == ms for value in values)


def test_an_exhausted_millisecond_borrows_the_next_one() -> None:
    state = generator._State()
    ms = _future_ms()
    state.last = generator._compose(ms, (1 << generator._RAND_BITS) - 2)
    value = uuid.UUID(int=state.next_value())
    assert value.int >> 80 == ms + 1
    assert value.version == 7


def test_a_forked_child_draws_fresh_random_steps() -> None:
    Uuid7Generator().new_id()
    generator._STATE._steps = [1, 2, 3]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, b"empty" if not generator._STATE._steps else b"kept")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"empty"
    os.close(read)


def test_new_ids_are_what_as_many_new_id_calls_would_give() -> None:
    ids = Uuid7Generator()
    minted = [*ids.new_ids(3), ids.new_id(), *ids.new_ids(1000), *ids.new_ids(0)]
    assert len(minted) == 1004 and len(set(minted)) == 1004
    assert all(a < b for a, b in itertools.pairwise(minted))
    for value in minted[:5] + minted[-5:]:
        assert type(value) is uuid.UUID and value.version == 7
        assert value.is_safe is uuid.SafeUUID.unknown
        assert uuid.UUID(str(value)) == value and pickle.loads(pickle.dumps(value)) == value
        assert abs((value.int >> 80) - time.time_ns() // 1_000_000) < 60_000  # on the clock


def test_next_values_carry_like_next_value_near_the_end_of_rand_b() -> None:
    ms = _future_ms()
    start = generator._compose(ms, (7 << 62) | (generator._RAND_B_MASK - 100))
    at_once, one_by_one = generator._State(), generator._State()
    at_once.last = one_by_one.last = start
    values = at_once.next_values(50)
    assert all(a < b for a, b in itertools.pairwise([start, *values]))
    assert any((v >> 64) & generator._RAND_A_MASK == 8 for v in values)  # carried into rand_a
    assert all(v >> 80 == ms for v in values)
    # The same arithmetic as single steps: each value is the previous plus a step of 1..2**32.
    for before, after in itertools.pairwise([start, *values]):
        step = generator._random_part(after) - generator._random_part(before)
        assert 1 <= step <= 2**32
    one_by_one.next_value()
    assert one_by_one.last > start


def test_mint_ids_falls_back_to_new_id() -> None:
    from tradeloom.components import mint_ids

    class Counting:
        def __init__(self) -> None:
            self.calls = 0

        def new_id(self) -> uuid.UUID:
            self.calls += 1
            return uuid.UUID(int=self.calls)

    plain = Counting()
    assert mint_ids(plain, 3) == [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)]
    assert plain.calls == 3
    assert len(mint_ids(Uuid7Generator(), 4)) == 4
