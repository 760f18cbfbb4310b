"""A UUIDv7 generator that is strictly monotonic and thread-safe within a process.

``uuid6.uuid7()`` keeps its ids increasing by moving the millisecond timestamp one step into the
future whenever two calls fall in the same millisecond. Under a burst (a backtest mints hundreds
of thousands of ids a second) the timestamps run far ahead of the wall clock, that drift is
shared by every caller in the process, and its module state is not protected by a lock. This
generator asks ``uuid6.uuid7()`` for the first id of each wall-clock millisecond (and uses the
wall clock with fresh random bits if that id's clock has drifted) and, within a millisecond,
increments the 74 random bits by a random step (RFC 9562, section 6.2, method 2 "monotonic
random"), so timestamps stay on the wall clock.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import time
import uuid
from collections import deque
from itertools import accumulate, repeat

import uuid6

from tradeloom.ids import derived_uuid7

_time_ns = time.time_ns

_RAND_BITS = 74  # rand_a (12 bits) + rand_b (62 bits)
_RAND_B_BITS = 62
_RAND_B_MASK = (1 << _RAND_B_BITS) - 1
_RAND_A_MASK = (1 << 12) - 1
_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_STEP_BITS = 32  # random increment; 2**42 ids per millisecond before the counter overflows
_STEPS_PER_READ = 1024  # random steps drawn from the OS per read (one read, not one per id)
_STEPS = struct.Struct(f">{_STEPS_PER_READ}I")  # 32-bit steps, matching _STEP_BITS


def _random_part(value: int) -> int:
    return (((value >> 64) & _RAND_A_MASK) << _RAND_B_BITS) | (value & _RAND_B_MASK)


def _compose(timestamp_ms: int, random_part: int) -> int:
    return (
        (timestamp_ms << 80)
        | _VERSION_7
        | ((random_part >> _RAND_B_BITS) << 64)
        | _VARIANT_RFC
        | (random_part & _RAND_B_MASK)
    )


class _State:
    """Process-wide: every generator instance shares it, so ids never go backwards in a process
    no matter how many generators the runtime builds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0
        self._steps: list[int] = []

    def reset_lock(self) -> None:
        # A fork while another thread holds the lock would leave the child's copy locked.
        self.lock = threading.Lock()
        # The child must not reuse the parent's unused random steps.
        self._steps = []

    def _refill_steps(self) -> list[int]:
        # os.urandom, as secrets uses, but one system call per _STEPS_PER_READ ids.
        self._steps = steps = list(_STEPS.unpack(os.urandom(_STEPS.size)))
        return steps

    def next_value(self) -> int:
        lock = self.lock
        lock.acquire()  # acquire/release in try/finally cost half of "with lock"
        try:
            last = self.last
            now_ms = _time_ns() // 1_000_000
            if now_ms > last >> 80:
                value = self._new_millisecond(now_ms)
            else:
                steps = self._steps or self._refill_steps()
                step = steps.pop() + 1
                if (last & _RAND_B_MASK) + step <= _RAND_B_MASK:
                    # The step stays within rand_b (all but about one in 2**30 times): adding
                    # it to the whole value is _compose(last_ms, _random_part(last) + step).
                    value = last + step
                else:
                    value = self._carry(last, step)
            self.last = value
            return value
        finally:
            lock.release()

    @staticmethod
    def _new_millisecond(now_ms: int) -> int:
        value: int = uuid6.uuid7().int
        if value >> 80 != now_ms:
            # uuid6's module-wide clock ran ahead (a burst of calls elsewhere in the
            # process): keep to the wall clock with fresh random bits instead.
            value = _compose(now_ms, secrets.randbits(_RAND_BITS))
        return value

    @staticmethod
    def _carry(last: int, step: int) -> int:
        last_ms = last >> 80
        random_part = _random_part(last) + step
        if random_part >> _RAND_BITS:
            # Counter exhausted within this millisecond: borrow the next one.
            last_ms += 1
            random_part = secrets.randbits(_RAND_BITS)
        return _compose(last_ms, random_part)

    def next_values(self, count: int) -> list[int]:
        """``count`` values at once: what as many next_value() calls in a row would give."""
        if count <= 0:
            return []
        steps = [step + 1 for step in struct.unpack(f">{count}I", os.urandom(4 * count))]
        with self.lock:
            last = self.last
            now_ms = _time_ns() // 1_000_000
            if now_ms > last >> 80:
                last = self._new_millisecond(now_ms)
                steps[0] = 0  # the first value is the millisecond's first id itself
            if (last & _RAND_B_MASK) + sum(steps) <= _RAND_B_MASK:
                # No step carries into rand_a: each value is the one before plus its step.
                values = list(accumulate(steps, initial=last))[1:]
            else:
                values = []
                for step in steps:
                    last = self._carry(last, step) if step else last
                    values.append(last)
            self.last = values[-1]
            return values

    def advance_past(self, value: int) -> None:
        with self.lock:
            self.last = max(self.last, value)


_STATE = _State()
_next_value = _STATE.next_value
_UUID = uuid.UUID
_new_uuid = uuid.UUID.__new__
# UUID's slots, set through their descriptors: UUID.__setattr__ refuses (it is immutable),
# and object.__setattr__ would look the descriptor up on every call.
_set_int = uuid.UUID.__dict__["int"].__set__
_set_safety = uuid.UUID.__dict__["is_safe"].__set__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_STATE.reset_lock)


class Uuid7Generator:
    """Mints RFC 9562 version 7 UUIDs.

    Ids from every instance in one process are strictly increasing (also when compared as
    strings or bytes) and distinct, from any number of threads. The 48-bit timestamp is the
    wall clock in milliseconds; it only runs ahead of the clock if more than about 4 * 10**12
    ids are minted within one millisecond, or if the clock steps backwards.
    """

    def new_id(self) -> uuid.UUID:
        """Return the next id."""
        # uuid.UUID(int=...) without its argument parsing: the value is a valid 128-bit int.
        new = _new_uuid(_UUID)
        _set_int(new, _next_value())
        _set_safety(new, _UNKNOWN_SAFETY)
        return new

    def new_ids(self, count: int) -> list[uuid.UUID]:
        """Return ``count`` ids at once, in increasing order: the ids as many ``new_id()``
        calls in a row would return, for a fraction of the cost (for a block of events
        created together, such as a block of a replayed file)."""
        values = _STATE.next_values(count)
        ids = list(map(_new_uuid, repeat(_UUID, len(values))))
        deque(map(_set_int, ids, values), maxlen=0)  # sets each id's int, without a loop
        deque(map(_set_safety, ids, repeat(_UNKNOWN_SAFETY)), maxlen=0)
        return ids

    def id_for(self, source: bytes, timestamp_ms: int | None) -> uuid.UUID:
        """The id of an input identified by ``source`` and made at ``timestamp_ms``: the same
        each time (a UUIDv7 of that time, the rest a hash of ``source``; see
        :func:`tradeloom.ids.derived_uuid7`)."""
        return derived_uuid7(source, timestamp_ms)

    def advance_past(self, seen: uuid.UUID) -> None:
        """Make every later id greater than ``seen`` (an id loaded from storage), so a restart
        mints no id at or below one already persisted, even if the clock stepped back."""
        _STATE.advance_past(seen.int)

    def __repr__(self) -> str:
        return "Uuid7Generator()"
