"""A dead letter's record fits the broker's default limit, whatever the bad record's size."""

from __future__ import annotations

from datetime import UTC, datetime

from tradeloom.components import DeadLetter
from tradeloom_redpanda.dead_letters import MAX_RECORD_BYTES, dead_letter_record


def _letter(raw: bytes, key: bytes | None) -> DeadLetter:
    return DeadLetter(
        source="redpanda feed (ticks)",
        reason="invalid JSON: " + "x" * 10_000,  # cut to 4,000 bytes in its header
        error_type="json",
        raw=raw,
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        location="ticks[0]@7",
        key=key,
    )


def _size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value) + sum(len(n) + len(v) for n, v in headers)


def test_a_small_record_is_kept_whole_with_its_key() -> None:
    key, value, headers = dead_letter_record(_letter(b"{", b"ORCL"))
    assert (key, value) == (b"ORCL", b"{")
    assert not {"tradeloom-raw-bytes", "tradeloom-key-bytes"} & {name for name, _ in headers}


def test_a_large_value_is_cut_to_leave_room_for_key_and_headers() -> None:
    key, value, headers = dead_letter_record(_letter(b"v" * 1_048_000, b"k" * 48_000))
    assert key == b"k" * 48_000
    assert value == b"v" * len(value)
    assert dict(headers)["tradeloom-raw-bytes"] == b"1048000"
    assert MAX_RECORD_BYTES - 100 < _size(key, value, headers) <= MAX_RECORD_BYTES


def test_a_huge_key_is_cut_too() -> None:
    key, value, headers = dead_letter_record(_letter(b"v" * 10, b"k" * 2_000_000))
    assert key == b"k" * 100_000 and value == b"v" * 10
    assert dict(headers)["tradeloom-key-bytes"] == b"2000000"
    assert _size(key, value, headers) <= MAX_RECORD_BYTES
