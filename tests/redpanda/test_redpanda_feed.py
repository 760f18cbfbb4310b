"""The redpanda feed: the plain JSON tick mapping, the feed conformance suite against a real
broker, the codec format, and resuming from the committed position."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from redpanda_support import FAST, produce
from tansu_broker import Broker

from tradeloom import Pipeline, make_settings
from tradeloom.components import Feed
from tradeloom.errors import ConfigError, DecodeError
from tradeloom.events import Fill, MarketTick, Side
from tradeloom.plugins import PluginManager
from tradeloom.testing.feeds import FeedConformance, collect_events, make_feed_context
from tradeloom_decimal.codec import DecimalJsonCodec
from tradeloom_redpanda.feed import RedpandaFeed
from tradeloom_redpanda.options import FeedOptions
from tradeloom_redpanda.ticks import TickMapping
from tradeloom_uuid7.generator import Uuid7Generator

IDS = Uuid7Generator()
CODEC = DecimalJsonCodec()
T0 = datetime(2024, 5, 6, 13, 30, tzinfo=UTC)


def mapping(**params: Any) -> TickMapping:
    options = FeedOptions(topic="ticks", **params)
    return TickMapping(options.field_paths(), options.ts_unit)


# -- the JSON mapping ----------------------------------------------------------------------------


def test_plain_json_ticks_read_exact_decimals_from_the_json_text() -> None:
    tick = mapping().decode(
        b'{"symbol": "INFY", "price": 1501.05, "qty": 3, "bid": "1501.00", '
        b'"ask": 1501.1, "volume": 12000, "ts": "2024-05-06T13:30:00.250Z", "venue": "X"}',
        IDS,
    )
    assert tick.instrument == "INFY"
    assert tick.last_price == Decimal("1501.05") and str(tick.last_price) == "1501.05"
    assert tick.ask == Decimal("1501.1") and str(tick.ask) == "1501.1"
    assert (tick.last_quantity, tick.bid, tick.volume) == (
        Decimal(3),
        Decimal("1501.00"),
        Decimal(12000),
    )
    assert tick.ts == T0 + timedelta(milliseconds=250)


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("auto", 1715002200250, 250_000),
        ("ms", 1715002200250, 250_000),
        ("s", Decimal("1715002200.25"), 250_000),
        ("us", 1715002200250001, 250_001),
        ("ns", 1715002200250001999, 250_001),
    ],
)
def test_epoch_timestamps_in_each_unit(unit: str, value: Any, expected: int) -> None:
    data = b'{"symbol": "A", "price": "1", "ts": ' + str(value).encode() + b"}"
    tick = mapping(ts_unit=unit).decode(data, IDS)
    assert tick.ts == datetime(2024, 5, 6, 13, 30, tzinfo=UTC) + timedelta(microseconds=expected)


def test_field_names_and_nested_paths_are_configurable() -> None:
    tick = mapping(
        fields={"instrument": "s", "last_price": "data.p", "ts": "data.T", "event_id": "uid"}
    ).decode(
        b'{"s": "BTCUSDT", "uid": "0190b4c2-7e5f-7a00-8000-000000000001", '
        b'"data": {"p": "64000.10", "T": 1715002200000}}',
        IDS,
    )
    assert (tick.instrument, tick.last_price, tick.ts) == ("BTCUSDT", Decimal("64000.10"), T0)
    assert tick.event_id == uuid.UUID("0190b4c2-7e5f-7a00-8000-000000000001")


@pytest.mark.parametrize(
    ("data", "error_type", "reason"),
    [
        (b"\xff\xfe", "json", "not UTF-8 text: invalid byte at offset 0"),
        (b'{"symbol": "A",', "json", "invalid JSON"),
        (b'["A", 1]', "schema", "expected a JSON object (one tick), got list"),
        (b'{"price": "1", "ts": 1}', "schema", "field 'symbol' (instrument) is missing"),
        (b'{"symbol": 7, "price": "1", "ts": 1}', "schema", "must be a string, got a number"),
        (b'{"symbol": "A", "ts": 1}', "schema", "field 'price' (last_price) is missing"),
        (b'{"symbol": "A", "price": "abc", "ts": 1}', "schema", "'abc' is not a number"),
        (b'{"symbol": "A", "price": true, "ts": 1}', "schema", "got a boolean"),
        (b'{"symbol": "A", "price": NaN, "ts": 1}', "json", "NaN is not a number"),
        (b'{"symbol": "A", "price": "-2", "ts": 1}', "schema", "must be greater than zero"),
        (b'{"symbol": "A", "price": "1", "qty": 0, "ts": 1}', "schema", "'qty' (last_quantity)"),
        (b'{"symbol": "A", "price": "1"}', "schema", "field 'ts' is missing"),
        (b'{"symbol": "A", "price": "1", "ts": "2024-05-06 13:30"}', "schema", "no UTC offset"),
        (b'{"symbol": "A", "price": "1", "ts": "yesterday"}', "schema", "not an ISO 8601"),
        (b'{"symbol": "A", "price": "1", "ts": 1e30}', "schema", "out of range for epoch ms"),
        # Each of these raised something else than a DecodeError, which stopped the feed (and
        # again after every restart: its position was never committed).
        (b"[" * 100_000 + b"]" * 100_000, "json", "invalid JSON: nested too deeply"),
        (b'{"symbol": "A", "price": "1", "ts": 1e999999}', "schema", "out of range for epoch"),
        (
            b'{"symbol": "A", "price": "1", "ts": "0001-01-01T00:00:00+01:00"}',
            "schema",
            "field 'ts': '0001-01-01T00:00:00+01:00' is out of range in UTC",
        ),
        (b'{"symbol": "A", "price": "1_000", "ts": 1}', "schema", "'1_000' is not a number"),
        (b'{"symbol": "A", "price": "1e999999", "ts": 1}', "schema", "is out of range"),
    ],
)
def test_bad_ticks_raise_decode_errors_naming_the_field(
    data: bytes, error_type: str, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        mapping().decode(data, IDS)
    assert caught.value.error_type == error_type
    assert reason in caught.value.reason


def test_feed_parameters_are_checked() -> None:
    manager = PluginManager().load()
    with pytest.raises(ConfigError) as caught:
        manager.create("feed", "redpanda", {"format": "csv", "fields": {"price": "p"}})
    message = str(caught.value)
    assert "redpanda feed: invalid parameters" in message
    assert "topic: Field required" in message
    assert "format: Input should be 'tradeloom' or 'json'" in message
    assert "unknown tick field 'price'" in message
    assert isinstance(manager.create("feed", "redpanda", {"topic": "ticks"}), RedpandaFeed)


# -- against the broker --------------------------------------------------------------------------


def _json_tick(symbol: str, n: int) -> bytes:
    ts = T0 + timedelta(seconds=n)
    return json.dumps({"symbol": symbol, "price": f"{100 + n}.5", "ts": ts.isoformat()}).encode()


def _feed(broker: Broker, topic: str, **params: Any) -> RedpandaFeed:
    return RedpandaFeed(
        bootstrap_servers=broker.bootstrap,
        topic=topic,
        **{"group_id": f"{topic}.group", "format": "json", **FAST, **params},
    )


def _fill_topic(broker: Broker, topic: str, values: list[bytes]) -> None:
    asyncio.run(produce(broker.bootstrap, topic, [(b"K", value) for value in values]))


class TestRedpandaFeedConformance(FeedConformance):
    """The feed keeps the feed contract (tradeloom.testing.feeds) over a real topic."""

    finite = False
    max_events = 12

    @pytest.fixture
    def feed(self, broker: Broker, prefix: str) -> Feed:
        topic = f"{prefix}ticks"
        _fill_topic(broker, topic, [_json_tick(s, n) for n in range(6) for s in ("A", "B")])
        return _feed(broker, topic)

    @pytest.fixture
    def bad_input_feed(self, broker: Broker, prefix: str) -> Feed:
        topic = f"{prefix}bad"
        values = [_json_tick("A", 0), b"\x00garbage", b'{"symbol": "A", "price": "0", "ts": 5}']
        values += [_json_tick("A", n) for n in range(1, 12)]
        _fill_topic(broker, topic, values)
        return _feed(broker, topic)


def test_codec_format_reads_tradeloom_events_and_refuses_other_event_types(
    broker: Broker, prefix: str
) -> None:
    topic = f"{prefix}events"
    ticks = [
        MarketTick(event_id=IDS.new_id(), ts=T0, instrument="A", last_price=Decimal(f"{n}.10"))
        for n in range(1, 4)
    ]
    a_fill = Fill(
        event_id=IDS.new_id(),
        ts=T0,
        order_id=IDS.new_id(),
        signal_id=IDS.new_id(),
        strategy_id="s",
        instrument="A",
        side=Side.SELL,
        quantity=Decimal(1),
        price=Decimal(1),
    )
    records = [CODEC.encode(ticks[0]), CODEC.encode(a_fill), b"", *map(CODEC.encode, ticks[1:])]
    _fill_topic(broker, topic, records)
    run = collect_events(_feed(broker, topic, format="tradeloom"), limit=3, codec=CODEC)
    assert run.events == ticks  # ids and exact prices kept
    assert [(d.error_type, d.reason) for d in run.dead_letters] == [
        ("wrong_type", "a Fill is not market data (MarketTick or Bar)"),
        ("empty", "empty record (no value)"),  # no bytes is as no value
    ]
    assert run.dead_letters[0].raw == CODEC.encode(a_fill)
    assert run.dead_letters[0].location.startswith(f"{topic}[")


def test_a_json_record_the_mapping_fails_on_is_set_aside_with_its_key(
    broker: Broker, prefix: str
) -> None:
    # A record time beyond any datetime (a producer may set any int64): fromtimestamp raised
    # OverflowError, which stopped the feed, and every restart again (never committed).
    topic = f"{prefix}odd"

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, _json_tick("A", 0), key=b"K")
            await producer.send_and_wait(topic, _json_tick("A", 1), key=b"K", timestamp_ms=2**62)
            await producer.send_and_wait(topic, _json_tick("A", 2), key=b"K")
        finally:
            await producer.stop()

    asyncio.run(write())
    run = collect_events(_feed(broker, topic, ts_source="record"), limit=2)
    assert len(run.events) == 2
    (letter,) = run.dead_letters
    assert letter.error_type == "decode_failed"
    assert letter.reason.startswith("the decoder failed on this input: ")
    assert (letter.raw, letter.key) == (_json_tick("A", 1), b"K")


def test_a_codec_that_fails_otherwise_than_with_a_decode_error_stops_the_feed(
    broker: Broker, prefix: str
) -> None:
    # A codec's bug, not the record's: setting every record aside would lose them all.
    class Brittle(DecimalJsonCodec):
        def decode(self, data: bytes) -> Any:
            raise RuntimeError("codec bug")

    topic = f"{prefix}brittle"
    tick = MarketTick(event_id=IDS.new_id(), ts=T0, instrument="A", last_price=Decimal(1))
    _fill_topic(broker, topic, [CODEC.encode(tick)])
    with pytest.raises(RuntimeError, match="codec bug"):
        collect_events(_feed(broker, topic, format="tradeloom"), limit=1, codec=Brittle())


def test_a_restarted_feed_resumes_after_the_last_tick_it_handed_out(
    broker: Broker, prefix: str
) -> None:
    topic = f"{prefix}resume"
    _fill_topic(broker, topic, [_json_tick("A", n) for n in range(10)])
    first = collect_events(_feed(broker, topic), limit=4)
    second = collect_events(_feed(broker, topic), limit=6)
    prices = [e.price for e in first.events] + [e.price for e in second.events]
    assert prices == [Decimal(f"{100 + n}.5") for n in range(10)]
    # Nothing left over: a third reader in the group waits for new ticks.
    _fill_topic(broker, topic, [_json_tick("A", 10)])
    third = collect_events(_feed(broker, topic), limit=1)
    assert [e.price for e in third.events] == [Decimal("110.5")]


def test_a_record_read_again_has_the_same_event_id(broker: Broker, prefix: str) -> None:
    # Read again from the last commit (after a crash, or by the member its partitions moved
    # to), a tick had a fresh id each time, so nothing downstream knew it for a repeat. Two
    # groups read every record: each record's tick has one id, its own.
    topic = f"{prefix}again"
    _fill_topic(broker, topic, [_json_tick("A", n) for n in range(5)])
    first = collect_events(_feed(broker, topic, group_id=f"{topic}.one"), limit=5)
    again = collect_events(_feed(broker, topic, group_id=f"{topic}.two"), limit=5)
    ids = [event.event_id for event in first.events]
    assert [event.event_id for event in again.events] == ids
    assert len(set(ids)) == 5
    # A UUIDv7 whose time is the record's (produced now, not the tick's 2024 time).
    assert all(event_id.version == 7 for event_id in ids)
    produced = [datetime.fromtimestamp((event_id.int >> 80) / 1000, UTC) for event_id in ids]
    assert all(abs(datetime.now(UTC) - at) < timedelta(minutes=5) for at in produced)


def test_the_feed_reports_how_many_records_it_has_not_handed_out(
    broker: Broker, prefix: str
) -> None:
    topic = f"{prefix}lag"
    _fill_topic(broker, topic, [_json_tick("A", n) for n in range(30)])
    feed = _feed(broker, topic, max_batch=10)
    lags: list[dict[str, int]] = []
    ctx = make_feed_context(report_lag=lambda reported: lags.append(dict(reported)))
    handed_out = 0

    async def read() -> None:
        nonlocal handed_out
        async for _ in feed.events(ctx):
            handed_out += 1

    async def main() -> None:
        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(30):
                while handed_out < 30 or lags[-1:] != [{topic: 0}]:  # idle polls report too
                    await asyncio.sleep(0.05)
        finally:
            reader.cancel()
            await feed.close()

    asyncio.run(main())
    # The first batch of ten was handed out while twenty more waited on the broker.
    assert lags[0] == {topic: 20}
    assert all(set(reported) <= {topic} for reported in lags)


def test_a_feed_forgets_the_partitions_that_move_to_another_feed(
    broker: Broker, prefix: str
) -> None:
    # Kept, a partition's old position would count in the lag (and be committed) should the
    # partition come back.
    topic = f"{prefix}moving"
    records = [(f"K{n}".encode(), _json_tick("A", n)) for n in range(40)]
    asyncio.run(produce(broker.bootstrap, topic, records))
    first, second = _feed(broker, topic), _feed(broker, topic)
    taken = {"first": 0, "second": 0}

    async def read(feed: RedpandaFeed, name: str) -> None:
        async for _ in feed.events(make_feed_context()):
            taken[name] += 1

    async def main() -> tuple[set[Any], set[Any], set[Any]]:
        readers = [asyncio.create_task(read(first, "first"))]
        try:
            async with asyncio.timeout(30):
                while taken["first"] < len(records):
                    await asyncio.sleep(0.05)
                before = set(first._handed_out)
                readers.append(asyncio.create_task(read(second, "second")))
                assert first._consumer is not None
                while len(first._consumer.assignment()) == len(before):
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                return before, set(first._handed_out), set(first._consumer.assignment())
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await first.close()
            await second.close()

    before, after, owned = asyncio.run(main())
    assert len(before) > 1, "the records must spread over several partitions"
    assert after <= owned and after < before


def test_without_a_group_id_the_feed_joins_the_group_its_transport_names(
    broker: Broker, prefix: str
) -> None:
    # Two deployments with their own group_prefix each read every record: in one default
    # group ("tradeloom.feed") they split the partitions, each seeing part of the data.
    topic = f"{prefix}deployments"
    _fill_topic(broker, topic, [_json_tick("A", n) for n in range(5)])
    params = {"format": "json", **FAST}
    desk1 = RedpandaFeed(bootstrap_servers=broker.bootstrap, topic=topic, **params)
    desk2 = RedpandaFeed(bootstrap_servers=broker.bootstrap, topic=topic, **params)
    first = collect_events(desk1, limit=5, consumer_group=f"{prefix}desk1.feed")
    second = collect_events(desk2, limit=5, consumer_group=f"{prefix}desk2.feed")
    assert [e.price for e in first.events] == [e.price for e in second.events]
    assert len(second.events) == 5


def test_the_redpanda_transport_names_the_feed_group_by_its_prefix() -> None:
    settings = make_settings(
        {
            "pipeline": {"transport": "redpanda"},
            "transport": {"bootstrap_servers": "127.0.0.1:1", "group_prefix": "desk1."},
            "feed": {
                "name": "redpanda",
                "params": {"bootstrap_servers": "127.0.0.1:1", "topic": "ticks"},
            },
            "strategies": [{"name": "sma_cross"}],
        }
    )
    assert Pipeline(settings, mode="live", roles=["feed"])._feed_group() == "desk1.feed"
    in_process = Pipeline(make_settings({"strategies": [{"name": "sma_cross"}]}), events=[])
    assert in_process._feed_group() is None
