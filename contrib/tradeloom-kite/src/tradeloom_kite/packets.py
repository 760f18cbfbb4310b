"""Parsing of the Kite Connect v3 WebSocket binary market-data messages.

A binary message is::

    int16 number of packets
    repeated: int16 packet length, then that many bytes of packet

All integers are big-endian. The packet's length tells its kind:

=====  ==========================================================================
bytes  content
=====  ==========================================================================
8      ``ltp``: instrument token, last traded price
28     index ``quote``: token, last price, high, low, open, close, change
32     index ``full``: the 28 bytes above plus the exchange timestamp
44     ``quote``: token, last price, last quantity, average price, volume, total buy
       and sell quantity, open, high, low, close
184    ``full``: the 44 bytes above, last trade time, open interest (and its day high and
       low), exchange timestamp, then ten 12-byte market-depth entries (five bids, then five
       offers: quantity int32, price int32, orders int16, two bytes of padding)
=====  ==========================================================================

Prices are integers in the smallest unit of the segment, which is the low byte of the
instrument token: paise (divide by 100) for most segments, 1/10,000,000 of a rupee for NSE
currency derivatives (``cds``) and 1/10,000 for BSE currency derivatives (``bcd``). They are
turned into :class:`~decimal.Decimal` by moving the decimal point (``scaleb``), which is exact.

A message of a single byte is a heartbeat. This module only reads bytes; it never raises on bad
input but returns :class:`PacketError` values saying where and why a message is malformed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

LTP_PACKET: Final = 8
INDEX_QUOTE_PACKET: Final = 28
INDEX_FULL_PACKET: Final = 32
QUOTE_PACKET: Final = 44
FULL_PACKET: Final = 184
PACKET_SIZES: Final = (
    LTP_PACKET,
    INDEX_QUOTE_PACKET,
    INDEX_FULL_PACKET,
    QUOTE_PACKET,
    FULL_PACKET,
)

DEPTH_OFFSET: Final = 64
DEPTH_ENTRY: Final = 12
DEPTH_LEVELS: Final = 5

# Segment numbers, found in the low byte of an instrument token.
SEGMENT_CDS: Final = 3
SEGMENT_BCD: Final = 6
SEGMENT_INDICES: Final = 9

_UINT16 = struct.Struct(">H")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")


class PacketMode(StrEnum):
    """The subscription mode a packet was sent in, as told by its size."""

    LTP = "ltp"
    QUOTE = "quote"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class DepthLevel:
    """One level of market depth."""

    quantity: int
    price: Decimal
    orders: int


@dataclass(frozen=True, slots=True)
class KitePacket:
    """One decoded quote packet. Fields a packet of its mode does not carry are ``None``."""

    index: int
    """1-based position of the packet in its message."""
    instrument_token: int
    mode: PacketMode
    is_index: bool
    last_price: Decimal
    last_quantity: int | None = None
    average_price: Decimal | None = None
    volume: int | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    change: Decimal | None = None
    last_trade_time: datetime | None = None
    open_interest: int | None = None
    open_interest_day_high: int | None = None
    open_interest_day_low: int | None = None
    exchange_timestamp: datetime | None = None
    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()

    @property
    def segment(self) -> int:
        return self.instrument_token & 0xFF

    @property
    def best_bid(self) -> Decimal | None:
        """Price of the first bid level, or ``None`` when that level is empty."""
        return _level_price(self.bids)

    @property
    def best_ask(self) -> Decimal | None:
        """Price of the first offer level, or ``None`` when that level is empty."""
        return _level_price(self.asks)


@dataclass(frozen=True, slots=True)
class PacketError:
    """Why part of a message could not be decoded. ``location`` is ``"packet N"`` (1-based)
    or ``"message"`` when the message as a whole is malformed."""

    location: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """The packets decoded from one binary message and the problems found in it."""

    packets: Sequence[KitePacket]
    errors: Sequence[PacketError]
    heartbeat: bool = False


def price_exponent(instrument_token: int) -> int:
    """The power of ten that turns the segment's integer prices into rupees."""
    segment = instrument_token & 0xFF
    if segment == SEGMENT_CDS:
        return -7
    if segment == SEGMENT_BCD:
        return -4
    return -2


def _level_price(levels: Sequence[DepthLevel]) -> Decimal | None:
    if not levels or levels[0].price <= 0:
        return None
    return levels[0].price


def _int32(data: bytes, offset: int) -> int:
    return int(_INT32.unpack_from(data, offset)[0])


def _uint32(data: bytes, offset: int) -> int:
    return int(_UINT32.unpack_from(data, offset)[0])


def _timestamp(seconds: int) -> datetime | None:
    # 0 means "not set" in Kite packets.
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def parse_message(message: bytes) -> ParsedMessage:
    """Split a binary message into packets and decode each one.

    A packet of an unknown size is reported and skipped; the packets after it are still read
    because its length prefix says where the next one starts. A message whose length prefixes
    run past its end, or that has bytes left over after the announced packets, is reported
    (the packets read before the fault are kept).
    """
    if len(message) == 1:
        return ParsedMessage(packets=(), errors=(), heartbeat=True)
    if len(message) < 2:
        return ParsedMessage(
            packets=(),
            errors=(PacketError("message", "empty binary message (no packet count)"),),
        )
    (count,) = _UINT16.unpack_from(message, 0)
    packets: list[KitePacket] = []
    errors: list[PacketError] = []
    offset = 2
    for number in range(1, count + 1):
        where = f"packet {number}"
        if offset + 2 > len(message):
            errors.append(
                PacketError(
                    where,
                    f"message truncated: it announces {count} packets but ends after "
                    f"{number - 1} ({len(message)} bytes)",
                )
            )
            return ParsedMessage(packets, errors)
        (length,) = _UINT16.unpack_from(message, offset)
        start = offset + 2
        end = start + length
        if end > len(message):
            errors.append(
                PacketError(
                    where,
                    f"packet truncated: its length prefix says {length} bytes but only "
                    f"{len(message) - start} remain in the message",
                )
            )
            return ParsedMessage(packets, errors)
        packet = decode_packet(message[start:end], number)
        if isinstance(packet, PacketError):
            errors.append(packet)
        else:
            packets.append(packet)
        offset = end
    if offset != len(message):
        errors.append(
            PacketError(
                "message",
                f"length mismatch: {len(message) - offset} bytes left over after the "
                f"{count} announced packets",
            )
        )
    return ParsedMessage(packets, errors)


def decode_packet(packet: bytes, index: int = 1) -> KitePacket | PacketError:
    """Decode one packet (without its length prefix) by its size."""
    size = len(packet)
    if size not in PACKET_SIZES:
        sizes = ", ".join(str(known) for known in PACKET_SIZES)
        return PacketError(
            f"packet {index}", f"unknown packet size {size} bytes (expected one of {sizes})"
        )
    token = _uint32(packet, 0)
    exponent = price_exponent(token)

    def price(offset: int) -> Decimal:
        return Decimal(_int32(packet, offset)).scaleb(exponent)

    is_index = (token & 0xFF) == SEGMENT_INDICES
    if size == LTP_PACKET:
        return KitePacket(
            index=index,
            instrument_token=token,
            mode=PacketMode.LTP,
            is_index=is_index,
            last_price=price(4),
        )
    if size in (INDEX_QUOTE_PACKET, INDEX_FULL_PACKET):
        return KitePacket(
            index=index,
            instrument_token=token,
            mode=PacketMode.QUOTE if size == INDEX_QUOTE_PACKET else PacketMode.FULL,
            is_index=True,
            last_price=price(4),
            high=price(8),
            low=price(12),
            open=price(16),
            close=price(20),
            change=price(24),
            exchange_timestamp=_timestamp(_uint32(packet, 28))
            if size == INDEX_FULL_PACKET
            else None,
        )
    full = size == FULL_PACKET
    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()
    if full:
        levels = tuple(
            DepthLevel(
                quantity=_uint32(packet, at),
                price=price(at + 4),
                orders=int(_UINT16.unpack_from(packet, at + 8)[0]),
            )
            for at in range(DEPTH_OFFSET, FULL_PACKET, DEPTH_ENTRY)
        )
        bids, asks = levels[:DEPTH_LEVELS], levels[DEPTH_LEVELS:]
    return KitePacket(
        index=index,
        instrument_token=token,
        mode=PacketMode.FULL if full else PacketMode.QUOTE,
        is_index=is_index,
        last_price=price(4),
        last_quantity=_uint32(packet, 8),
        average_price=price(12),
        volume=_uint32(packet, 16),
        total_buy_quantity=_uint32(packet, 20),
        total_sell_quantity=_uint32(packet, 24),
        open=price(28),
        high=price(32),
        low=price(36),
        close=price(40),
        last_trade_time=_timestamp(_uint32(packet, 44)) if full else None,
        open_interest=_uint32(packet, 48) if full else None,
        open_interest_day_high=_uint32(packet, 52) if full else None,
        open_interest_day_low=_uint32(packet, 56) if full else None,
        exchange_timestamp=_timestamp(_uint32(packet, 60)) if full else None,
        bids=bids,
        asks=asks,
    )
