"""How a dead letter is written to the dead-letter topic: the original bytes as the value and
its key (both cut to fit :data:`MAX_RECORD_BYTES`), the error and where the record came from in
headers."""

from __future__ import annotations

from tradeloom.components import DeadLetter

MAX_REASON_BYTES = 4000
MAX_RECORD_BYTES = 1_000_000
"""The most a dead letter's key, value and headers take together. A record near the producer's
and the broker's 1 MiB default limit is bad input as any other; with the headers on top, its
dead letter whole would be refused as too large, and the transport stop on it."""
MAX_KEY_BYTES = 100_000
"""The most of a record's key a dead letter keeps."""

HEADER_ERROR_TYPE = "tradeloom-error-type"
HEADER_ERROR = "tradeloom-error"
HEADER_SOURCE = "tradeloom-source"
HEADER_LOCATION = "tradeloom-location"
HEADER_TS = "tradeloom-ts"
HEADER_RAW_BYTES = "tradeloom-raw-bytes"
"""Set when the value was cut: the size of the whole value, in bytes."""
HEADER_KEY_BYTES = "tradeloom-key-bytes"
"""Set when the key was cut: the size of the whole key, in bytes."""
_SIZE_HEADER_ROOM = 64  # a size header's name and up to 20 digits


def dead_letter_record(
    letter: DeadLetter,
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The key, value and headers of ``letter``'s record on the dead-letter topic."""
    headers = dead_letter_headers(letter)
    key = letter.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers.append((HEADER_KEY_BYTES, str(len(key)).encode()))
        key = key[:MAX_KEY_BYTES]
    taken = len(key or b"") + sum(len(name) + len(value) for name, value in headers)
    room = MAX_RECORD_BYTES - taken - _SIZE_HEADER_ROOM
    raw = letter.raw
    if len(raw) > room:
        headers.append((HEADER_RAW_BYTES, str(len(raw)).encode()))
        raw = raw[:room]
    return key, raw, headers


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Kafka record headers describing ``letter`` (UTF-8 values; the reason is cut to
    :data:`MAX_REASON_BYTES`)."""
    reason = letter.reason.encode("utf-8", "replace")
    if len(reason) > MAX_REASON_BYTES:
        reason = reason[: MAX_REASON_BYTES - 3] + b"..."
    return [
        (HEADER_ERROR_TYPE, letter.error_type.encode("utf-8", "replace")),
        (HEADER_ERROR, reason),
        (HEADER_SOURCE, letter.source.encode("utf-8", "replace")),
        (HEADER_LOCATION, letter.location.encode("utf-8", "replace")),
        (HEADER_TS, letter.ts.isoformat().encode()),
    ]


def read_headers(headers: object) -> dict[str, str]:
    """Decode a consumed record's headers into a dict (for tools and tests)."""
    return {
        str(name): bytes(value).decode("utf-8", "replace")
        for name, value in (headers or ())  # type: ignore[attr-defined]
    }
