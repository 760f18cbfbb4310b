"""Builds Kite v3 WebSocket binary messages from the documented field layouts, for tests.

Written independently of the parser under test: every field is packed here by its documented
offset and type (big-endian int32 for token, prices and quantities; depth entries of quantity
int32, price int32, orders int16 and two bytes of padding).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime

HEARTBEAT = b"\x00"


def ltp_packet(token: int, last_price: int) -> bytes:
    """8 bytes: token, last traded price."""
    return struct.pack(">Ii", token, last_price)


def index_packet(
    token: int,
    last_price: int,
    high: int,
    low: int,
    open_: int,
    close: int,
    change: int,
    exchange_timestamp: int | None = None,
) -> bytes:
    """28 bytes (index quote) or, with an exchange timestamp, 32 bytes (index full)."""
    packet = struct.pack(">Iiiiiii", token, last_price, high, low, open_, close, change)
    if exchange_timestamp is not None:
        packet += struct.pack(">I", exchange_timestamp)
    return packet


def quote_packet(
    token: int,
    last_price: int,
    last_quantity: int = 0,
    average_price: int = 0,
    volume: int = 0,
    buy_quantity: int = 0,
    sell_quantity: int = 0,
    ohlc: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> bytes:
    """44 bytes: token, LTP, LTQ, ATP, volume, total buy/sell quantity, open, high, low, close."""
    return struct.pack(
        ">Iiiiiiiiiii",
        token,
        last_price,
        last_quantity,
        average_price,
        volume,
        buy_quantity,
        sell_quantity,
        *ohlc,
    )


def full_packet(
    token: int,
    last_price: int,
    last_quantity: int = 0,
    volume: int = 0,
    *,
    average_price: int = 0,
    ohlc: tuple[int, int, int, int] = (0, 0, 0, 0),
    last_trade_time: int = 0,
    oi: tuple[int, int, int] = (0, 0, 0),
    exchange_timestamp: int = 0,
    bids: Sequence[tuple[int, int, int]] = (),
    asks: Sequence[tuple[int, int, int]] = (),
) -> bytes:
    """184 bytes: the quote packet, last trade time, OI (value, day high, day low), exchange
    timestamp, then five bid and five offer levels of (quantity, price, orders)."""
    head = quote_packet(token, last_price, last_quantity, average_price, volume, 0, 0, ohlc)
    head += struct.pack(">IIIII", last_trade_time, *oi, exchange_timestamp)
    depth = b""
    for side in (bids, asks):
        levels = list(side) + [(0, 0, 0)] * (5 - len(side))
        for quantity, price, orders in levels:
            depth += struct.pack(">iiH", quantity, price, orders) + b"\x00\x00"
    packet = head + depth
    assert len(packet) == 184
    return packet


def message(*packets: bytes, count: int | None = None) -> bytes:
    """A binary message: int16 packet count, then each packet behind its int16 length."""
    body = b"".join(struct.pack(">H", len(packet)) + packet for packet in packets)
    return struct.pack(">H", len(packets) if count is None else count) + body


CLOCK_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
"""The fixed time of the test clock (conftest.FixedClock)."""
