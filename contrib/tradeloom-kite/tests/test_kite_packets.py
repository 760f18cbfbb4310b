"""The binary message parser, on messages built from the documented layouts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kite_frames import HEARTBEAT, full_packet, index_packet, ltp_packet, message, quote_packet
from tradeloom_kite.packets import PacketMode, decode_packet, parse_message, price_exponent

INFY = 408065  # low byte 1: NSE equity
NIFTY = 256265  # low byte 9: indices
USDINR = (12345 << 8) | 3  # low byte 3: NSE currency derivatives
BSE_CURRENCY = (777 << 8) | 6  # low byte 6: BSE currency derivatives


def test_ltp_packet_price_is_exact_decimal_in_rupees() -> None:
    parsed = parse_message(message(ltp_packet(INFY, 152345)))
    assert parsed.errors == []
    (packet,) = parsed.packets
    assert packet.mode is PacketMode.LTP
    assert packet.instrument_token == INFY
    assert packet.last_price == Decimal("1523.45")
    assert str(packet.last_price) == "1523.45"
    assert packet.volume is None and packet.bids == ()


def test_quote_packet_fields() -> None:
    raw = quote_packet(
        INFY,
        150005,
        last_quantity=25,
        average_price=149990,
        volume=1_234_567,
        buy_quantity=1000,
        sell_quantity=2000,
        ohlc=(149000, 151000, 148500, 148800),
    )
    assert len(raw) == 44
    (packet,) = parse_message(message(raw)).packets
    assert packet.mode is PacketMode.QUOTE
    assert packet.last_price == Decimal("1500.05")
    assert packet.last_quantity == 25
    assert packet.average_price == Decimal("1499.90")
    assert packet.volume == 1_234_567
    assert (packet.total_buy_quantity, packet.total_sell_quantity) == (1000, 2000)
    assert (packet.open, packet.high, packet.low, packet.close) == (
        Decimal("1490.00"),
        Decimal("1510.00"),
        Decimal("1485.00"),
        Decimal("1488.00"),
    )
    assert packet.exchange_timestamp is None


def test_full_packet_depth_and_timestamps() -> None:
    raw = full_packet(
        INFY,
        152350,
        last_quantity=10,
        volume=500,
        last_trade_time=1_704_164_640,
        oi=(7, 9, 3),
        exchange_timestamp=1_704_164_645,
        bids=[(100, 152340, 3), (50, 152335, 1)],
        asks=[(80, 152355, 2)],
    )
    (packet,) = parse_message(message(raw)).packets
    assert packet.mode is PacketMode.FULL
    assert packet.exchange_timestamp == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert packet.last_trade_time == datetime(2024, 1, 2, 3, 4, 0, tzinfo=UTC)
    assert (packet.open_interest, packet.open_interest_day_high) == (7, 9)
    assert packet.open_interest_day_low == 3
    assert packet.best_bid == Decimal("1523.40")
    assert packet.best_ask == Decimal("1523.55")
    assert [(level.quantity, level.price, level.orders) for level in packet.bids[:2]] == [
        (100, Decimal("1523.40"), 3),
        (50, Decimal("1523.35"), 1),
    ]
    assert len(packet.bids) == 5 and len(packet.asks) == 5
    # Empty levels are zero on the wire and mean "no order there".
    assert packet.asks[1].price == 0


def test_empty_best_levels_are_none() -> None:
    (packet,) = parse_message(message(full_packet(INFY, 100))).packets
    assert packet.best_bid is None and packet.best_ask is None
    assert packet.exchange_timestamp is None


@pytest.mark.parametrize(
    ("timestamp", "mode", "size"),
    [(None, PacketMode.QUOTE, 28), (1_704_164_645, PacketMode.FULL, 32)],
)
def test_index_packets(timestamp: int | None, mode: PacketMode, size: int) -> None:
    raw = index_packet(NIFTY, 2171050, 2180000, 2160025, 2165000, 2170000, 1050, timestamp)
    assert len(raw) == size
    (packet,) = parse_message(message(raw)).packets
    assert packet.is_index and packet.mode is mode
    assert packet.last_price == Decimal("21710.50")
    assert packet.low == Decimal("21600.25")
    assert packet.change == Decimal("10.50")
    assert packet.last_quantity is None and packet.volume is None
    expected_ts = None if timestamp is None else datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert packet.exchange_timestamp == expected_ts


def test_currency_segments_use_their_own_divisors() -> None:
    assert price_exponent(INFY) == -2
    assert price_exponent(USDINR) == -7
    assert price_exponent(BSE_CURRENCY) == -4
    first, second = parse_message(
        message(ltp_packet(USDINR, 831234567), ltp_packet(BSE_CURRENCY, 831234))
    ).packets
    assert first.last_price == Decimal("83.1234567")
    assert second.last_price == Decimal("83.1234")


def test_several_packets_in_one_message_keep_their_order() -> None:
    parsed = parse_message(
        message(ltp_packet(INFY, 100), quote_packet(884737, 200), full_packet(INFY, 300))
    )
    assert parsed.errors == []
    assert [(p.index, p.mode, p.last_price) for p in parsed.packets] == [
        (1, PacketMode.LTP, Decimal("1.00")),
        (2, PacketMode.QUOTE, Decimal("2.00")),
        (3, PacketMode.FULL, Decimal("3.00")),
    ]


def test_heartbeat_is_recognised() -> None:
    parsed = parse_message(HEARTBEAT)
    assert parsed.heartbeat and parsed.packets == () and parsed.errors == ()


def test_zero_packet_message_is_empty_not_an_error() -> None:
    parsed = parse_message(message())
    assert not parsed.heartbeat and parsed.packets == [] and parsed.errors == []


def test_truncated_packet_is_reported_with_its_position() -> None:
    whole = message(ltp_packet(INFY, 100), quote_packet(INFY, 200))
    parsed = parse_message(whole[:-5])
    assert [p.last_price for p in parsed.packets] == [Decimal("1.00")]
    (error,) = parsed.errors
    assert error.location == "packet 2"
    assert "length prefix says 44 bytes but only 39 remain" in error.reason


def test_message_announcing_more_packets_than_it_holds() -> None:
    parsed = parse_message(message(ltp_packet(INFY, 100), count=3))
    assert len(parsed.packets) == 1
    (error,) = parsed.errors
    assert error.location == "packet 2"
    assert "announces 3 packets but ends after 1" in error.reason


def test_trailing_bytes_are_a_length_mismatch() -> None:
    parsed = parse_message(message(ltp_packet(INFY, 100)) + b"\x01\x02\x03")
    assert len(parsed.packets) == 1
    (error,) = parsed.errors
    assert error.location == "message"
    assert "3 bytes left over after the 1 announced packets" in error.reason


def test_unknown_packet_size_is_skipped_and_the_rest_still_read() -> None:
    parsed = parse_message(message(ltp_packet(INFY, 100), b"\x00" * 50, ltp_packet(INFY, 300)))
    assert [p.index for p in parsed.packets] == [1, 3]
    (error,) = parsed.errors
    assert error.location == "packet 2"
    assert "unknown packet size 50 bytes" in error.reason


def test_empty_binary_message_is_an_error() -> None:
    (error,) = parse_message(b"").errors
    assert error.location == "message"


def test_decode_packet_rejects_bad_size_directly() -> None:
    result = decode_packet(b"\x00" * 7, index=4)
    assert not hasattr(result, "last_price")
    assert result.location == "packet 4"  # type: ignore[union-attr]


def test_garbage_never_raises_and_is_always_accounted_for() -> None:
    import random

    rng = random.Random(20240102)
    valid = message(ltp_packet(INFY, 100), quote_packet(INFY, 200))
    for _ in range(500):
        if rng.random() < 0.5:
            frame = rng.randbytes(rng.randint(0, 200))
        else:  # a valid message with a few bytes flipped or cut
            mutated = bytearray(valid)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            frame = bytes(mutated[: rng.randint(1, len(mutated))])
        parsed = parse_message(frame)
        assert parsed.heartbeat or parsed.packets or parsed.errors or frame[:2] == b"\x00\x00"
        for error in parsed.errors:
            assert error.location == "message" or error.location.startswith("packet ")
            assert error.reason
