"""The redpanda transport on its own against a real broker: topics and keys, dead letters,
deduplication, commits only after handling, and its parameters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from redpanda_support import FAST, read_topic
from tansu_broker import Broker

from tradeloom.components import DeadLetter
from tradeloom.errors import ConfigError
from tradeloom.events import Cancel, Event, Fill, MarketTick, Order, OrderType, Side, Signal
from tradeloom.plugins import PluginManager
from tradeloom.runtime.clock import WallClock
from tradeloom.runtime.status import PipelineStatus
from tradeloom.runtime.transport import Topics
from tradeloom.settings import Settings
from tradeloom_decimal.codec import DecimalJsonCodec
from tradeloom_redpanda.dead_letters import read_headers
from tradeloom_redpanda.transport import RedpandaTransport, _Rebalance

GUARD_SECONDS = 30.0
T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
CODEC = DecimalJsonCodec()


def tick(instrument: str, price: str, n: int = 0) -> MarketTick:
    return MarketTick(
        event_id=uuid4(),
        ts=T0 + timedelta(seconds=n),
        instrument=instrument,
        last_price=Decimal(price),
    )


def fill(instrument: str) -> Fill:
    return Fill(
        event_id=uuid4(),
        ts=T0,
        order_id=uuid4(),
        signal_id=uuid4(),
        strategy_id="s",
        instrument=instrument,
        side=Side.BUY,
        quantity=Decimal(1),
        price=Decimal("10.5"),
    )


class Harness:
    """A transport bound the way a pipeline binds it, with what it reports collected."""

    def __init__(
        self, broker: Broker, prefix: str, *, codec: DecimalJsonCodec = CODEC, **params: Any
    ) -> None:
        self.transport = RedpandaTransport(
            bootstrap_servers=broker.bootstrap,
            topic_prefix=prefix,
            group_prefix=prefix,
            **{**FAST, **params},
        )
        self.letters: list[DeadLetter] = []
        self.status = PipelineStatus()
        self.received: list[tuple[str, Event]] = []
        self.transport.bind(
            codec=codec,
            on_dead_letter=self.letters.append,
            logger=logging.getLogger("test.redpanda.transport"),
            clock=WallClock(),
            settings=Settings(reconnect={"max_attempts": 3, "base_delay_seconds": 0.05}),
            status=self.status,
        )

    def collect(self, topic: str, event: Event) -> None:
        self.received.append((topic, event))

    async def run_until(
        self,
        done: Callable[[], bool],
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> BaseException | None:
        """Start, run until ``done()``, then drain like a pipeline does; return what run()
        raised."""
        transport = self.transport
        await transport.start()
        error: BaseException | None = None
        try:
            async with asyncio.timeout(GUARD_SECONDS):
                runner = asyncio.ensure_future(transport.run())
                if between is not None:
                    await between()
                while not done() and not runner.done():
                    await asyncio.sleep(0.02)
                transport.stop_consuming()
                try:
                    await runner
                except Exception as exc:
                    error = exc
                await transport.flush()
        finally:
            await transport.close()
        return error


async def _produce_raw(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]]):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_events_cross_the_broker_on_prefixed_topics_keyed_by_instrument(
    broker: Broker, prefix: str
) -> None:
    harness = Harness(broker, prefix, topics={"fills": f"{prefix}custom-fills"})
    harness.transport.subscribe("strategy", (Topics.MARKET, Topics.FILLS), harness.collect)
    ticks = [tick(symbol, f"{100 + n}.{n:02d}", n) for n in range(10) for symbol in ("AB", "CD")]
    one_fill = fill("AB")

    async def publish() -> None:
        for event in ticks:
            harness.transport.publish(Topics.MARKET, event, event.instrument)
        harness.transport.publish(Topics.FILLS, one_fill, one_fill.instrument)
        await harness.transport.delivered()

    def all_received_and_lag_measured() -> bool:
        return len(harness.received) == 21 and "strategy/market" in harness.status.consumer_lag

    error = asyncio.run(harness.run_until(all_received_and_lag_measured, publish))
    assert error is None
    assert harness.status.consumer_lag["strategy/market"] == 0
    market = [event for topic, event in harness.received if topic == Topics.MARKET]
    for symbol in ("AB", "CD"):  # the same events, exact, in order per instrument
        assert [e for e in market if e.instrument == symbol] == [
            t for t in ticks if t.instrument == symbol
        ]
    assert (Topics.FILLS, one_fill) in harness.received
    assert harness.transport.topic(Topics.MARKET) == f"{prefix}market"

    records = asyncio.run(read_topic(broker.bootstrap, f"{prefix}market", 20))
    by_key: dict[bytes, set[int]] = {}
    for record in records:
        by_key.setdefault(record.key, set()).add(record.partition)
    assert set(by_key) == {b"AB", b"CD"}
    assert all(len(partitions) == 1 for partitions in by_key.values())
    fills = asyncio.run(read_topic(broker.bootstrap, f"{prefix}custom-fills", 1))
    assert [CODEC.decode(r.value) for r in fills] == [one_fill]


def test_bad_records_are_dead_lettered_with_the_error_and_processing_goes_on(
    broker: Broker, prefix: str
) -> None:
    harness = Harness(broker, prefix)
    harness.transport.subscribe("risk", (Topics.MARKET,), harness.collect)
    first, last = tick("AB", "10"), tick("AB", "11", 1)
    invalid = CODEC.encode(tick("AB", "12", 2)).replace(b'"12"', b'"-12"')
    garbage = b"\x00\xffnot json"
    wrong_type = CODEC.encode(fill("AB"))
    bad = [garbage, invalid, wrong_type, b""]

    async def write() -> None:
        await _produce_raw(
            broker.bootstrap,
            f"{prefix}market",
            [
                (b"AB", CODEC.encode(first)),
                *((b"AB", value) for value in bad),
                (b"AB", CODEC.encode(last)),
            ],
        )

    error = asyncio.run(harness.run_until(lambda: len(harness.received) == 2, write))
    assert error is None
    assert [event for _, event in harness.received] == [first, last]
    types = ["json", "schema", "wrong_type", "empty"]
    assert [letter.error_type for letter in harness.letters] == types
    assert "last_price" in harness.letters[1].reason
    assert "Fill on the market topic" in harness.letters[2].reason
    assert harness.transport.stats.dead_letters == 4

    records = asyncio.run(read_topic(broker.bootstrap, f"{prefix}dead_letters", 4))
    headers = [read_headers(record.headers) for record in records]
    by_offset = sorted(
        zip(headers, records, strict=True),
        key=lambda pair: int(pair[0]["tradeloom-location"].rsplit("@", 1)[1]),
    )
    headers = [h for h, _ in by_offset]
    assert [record.value for _, record in by_offset] == bad  # the original bytes
    assert {record.key for record in records} == {b"AB"}  # and key: resent, it keeps its order
    assert [h["tradeloom-error-type"] for h in headers] == types
    assert headers[0]["tradeloom-error"].startswith("not UTF-8 text")
    assert headers[1]["tradeloom-error"] == harness.letters[1].reason
    assert all(h["tradeloom-location"].startswith(f"{prefix}market[") for h in headers)
    assert all("role risk" in h["tradeloom-source"] for h in headers)


class _Brittle(DecimalJsonCodec):
    """A codec with a bug: it raises something else than a DecodeError on some bytes."""

    def decode(self, data: bytes) -> Event:
        if data.startswith(b"BOOM"):
            raise RecursionError("maximum recursion depth exceeded")
        return super().decode(data)


def test_a_codec_failing_otherwise_than_with_a_decode_error_follows_on_handler_error(
    broker: Broker, prefix: str
) -> None:
    # A codec's bug stops the role by default (setting every record aside would lose them);
    # on_handler_error = "dead_letter" sets the record aside, as a failing handler's.
    first, last = tick("AB", "10"), tick("AB", "11", 1)
    records = [(b"AB", CODEC.encode(first)), (b"AB", b"BOOM"), (b"AB", CODEC.encode(last))]
    stopping = Harness(broker, prefix, codec=_Brittle())
    stopping.transport.subscribe("risk", (Topics.MARKET,), stopping.collect)

    async def write() -> None:
        await _produce_raw(broker.bootstrap, f"{prefix}market", records)

    error = asyncio.run(stopping.run_until(lambda: False, write))
    assert isinstance(error, RecursionError)
    assert [event for _, event in stopping.received] == [first]
    going_on = Harness(broker, f"{prefix}b.", codec=_Brittle(), on_handler_error="dead_letter")
    going_on.transport.subscribe("risk", (Topics.MARKET,), going_on.collect)

    async def write_again() -> None:
        await _produce_raw(broker.bootstrap, f"{prefix}b.market", records)

    error = asyncio.run(going_on.run_until(lambda: len(going_on.received) == 2, write_again))
    assert error is None
    assert [(letter.error_type, letter.raw) for letter in going_on.letters] == [
        ("RecursionError", b"BOOM")
    ]


def test_a_record_too_large_to_keep_whole_is_cut_in_its_dead_letter(
    broker: Broker, prefix: str
) -> None:
    # Its dead letter, with the headers (and key) on top, was refused by the broker as too
    # large, and the transport stopped on it, again after every restart (never committed).
    harness = Harness(broker, prefix)
    harness.transport.subscribe("risk", (Topics.MARKET,), harness.collect)
    first, last = tick("AB", "10"), tick("AB", "11", 1)
    key = b"K" * 48_000
    near_the_limit = b"\x00" * 1_000_000  # with the key: just under 1 MiB

    async def write() -> None:
        await _produce_raw(
            broker.bootstrap,
            f"{prefix}market",
            [(b"AB", CODEC.encode(first)), (key, near_the_limit), (b"AB", CODEC.encode(last))],
        )

    error = asyncio.run(harness.run_until(lambda: len(harness.received) == 2, write))
    assert error is None
    assert [event for _, event in harness.received] == [first, last]
    assert [letter.error_type for letter in harness.letters] == ["json"]
    (record,) = asyncio.run(read_topic(broker.bootstrap, f"{prefix}dead_letters", 1))
    headers = read_headers(record.headers)
    assert headers["tradeloom-raw-bytes"] == "1000000"
    assert record.key == key
    assert record.value == near_the_limit[: len(record.value)]
    size = (
        len(record.key)
        + len(record.value)
        + sum(len(name) + len(value) for name, value in record.headers)
    )
    assert size <= 1_000_000


def test_an_event_delivered_twice_is_handled_once(broker: Broker, prefix: str) -> None:
    harness = Harness(broker, prefix)
    harness.transport.subscribe("portfolio", (Topics.FILLS,), harness.collect)
    once, other = fill("AB"), fill("AB")

    async def publish_twice() -> None:
        for event in (once, once, other):
            harness.transport.publish(Topics.FILLS, event, event.instrument)

    error = asyncio.run(
        harness.run_until(lambda: harness.transport.stats.consumed == 3, publish_twice)
    )
    assert error is None
    assert [event for _, event in harness.received] == [once, other]
    assert harness.transport.stats.duplicates == 1
    assert harness.status.duplicates_ignored == 1


@pytest.mark.parametrize("lookback", [1000, 0])
def test_a_tick_published_again_is_skipped_by_a_role_restarted_since_the_first(
    broker: Broker, prefix: str, lookback: int
) -> None:
    # A feed killed after publishing a tick, before committing its source, publishes it again
    # (the same id) once restarted. A strategy that handled the first and was stopped
    # cleanly meanwhile began with an empty memory of ids, and traded the tick twice.
    first, again_after = tick("AB", "10"), tick("AB", "11", 1)
    market = f"{prefix}market"

    def strategy() -> Harness:
        harness = Harness(broker, prefix, dedupe_lookback=lookback)
        harness.transport.subscribe("strategy", (Topics.MARKET,), harness.collect)
        return harness

    async def publish_first() -> None:
        await _produce_raw(broker.bootstrap, market, [(b"AB", CODEC.encode(first))])

    before = strategy()
    assert asyncio.run(before.run_until(lambda: len(before.received) == 1, publish_first)) is None

    async def publish_again() -> None:
        await _produce_raw(
            broker.bootstrap,
            market,
            [(b"AB", CODEC.encode(first)), (b"AB", CODEC.encode(again_after))],
        )

    after = strategy()
    assert (
        asyncio.run(after.run_until(lambda: after.transport.stats.consumed == 2, publish_again))
        is None
    )
    if lookback:
        assert [event for _, event in after.received] == [again_after]
        assert after.status.duplicates_ignored == 1
    else:  # as before: nothing to know the repeat by
        assert [event for _, event in after.received] == [first, again_after]


def test_a_lookback_that_cannot_reach_the_broker_gives_up_and_the_catch_up_goes_on(
    private_broker: Broker, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Reading the committed positions failed or waited for the broker without a bound, before
    # the fills journal was read: the role went on with books that lacked it, silently.
    caplog.set_level(logging.WARNING, logger="test.redpanda.transport")
    harness = Harness(private_broker, prefix, operation_timeout_seconds=1)
    harness.transport.subscribe("risk", (Topics.MARKET,), harness.collect)
    journal_read: list[bool] = []

    async def read_journal() -> None:
        journal_read.append(True)

    harness.transport.add_assignment_hook("risk", read_journal)

    async def scenario() -> float:
        transport = harness.transport
        await transport.start()
        try:
            role = transport._roles["risk"]
            private_broker.kill()
            started = time.monotonic()
            market = TopicPartition(f"{prefix}market", 0)
            await asyncio.wait_for(transport._catch_up_then_resume(role, [market]), 30)
            return time.monotonic() - started
        finally:
            await transport.close()

    took = asyncio.run(scenario())
    assert journal_read == [True]
    assert took < 15  # the lookback's second, then the catch-up's own bounded waits
    assert any(
        "could not read back the records before its positions" in r.getMessage()
        for r in caplog.records
    )


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("role", ["strategy", "risk"])
def test_a_failing_handler_stops_after_committing_what_was_handled_before_it(
    broker: Broker, prefix: str, role: str
) -> None:
    # Each tick's handling publishes a fill at its price; the third publishes, then raises.
    ticks = [tick("AB", str(10 + n), n) for n in range(5)]
    first = Harness(broker, prefix)

    def handle(harness: Harness, topic: str, event: Event) -> None:
        assert isinstance(event, MarketTick)
        harness.transport.publish(
            Topics.FILLS, fill("AB").model_copy(update={"price": event.last_price}), "AB"
        )
        if harness is first and event == ticks[2]:
            raise Boom("cannot handle the third tick")
        harness.collect(topic, event)

    first.transport.subscribe(role, (Topics.MARKET,), partial(handle, first))
    if role == "strategy":  # as the pipeline declares for its strategy stage
        first.transport.add_decided_again(role, (Topics.MARKET,))

    async def publish() -> None:
        for event in ticks:
            first.transport.publish(Topics.MARKET, event, "AB")

    error = asyncio.run(first.run_until(lambda: False, publish))
    assert isinstance(error, Boom)
    assert [event for _, event in first.received] == ticks[:2]

    # The next member of the group starts at the failing event: nothing is lost. A strategy
    # decides again on that tick, so what it published before the error was not sent (else
    # it came twice); another role's output stands (an executor's fill is a trade made).
    second = Harness(broker, prefix)
    second.transport.subscribe(role, (Topics.MARKET,), partial(handle, second))
    assert asyncio.run(second.run_until(lambda: len(second.received) == 3)) is None
    assert [event for _, event in second.received] == ticks[2:]
    expected = [event.last_price for event in ticks]
    if role != "strategy":
        expected.insert(2, ticks[2].last_price)
    records = asyncio.run(read_topic(broker.bootstrap, f"{prefix}fills", len(expected)))
    assert [CODEC.decode(record.value).price for record in records] == expected  # type: ignore[attr-defined]


def test_dead_letter_policy_sets_a_failing_event_aside_and_goes_on(
    broker: Broker, prefix: str
) -> None:
    ticks = [tick("AB", str(10 + n), n) for n in range(3)]
    harness = Harness(broker, prefix, on_handler_error="dead_letter")

    def fail_on_second(topic: str, event: Event) -> None:
        if event == ticks[1]:
            raise Boom("strategy bug")
        harness.collect(topic, event)

    harness.transport.subscribe("strategy", (Topics.MARKET,), fail_on_second)

    async def publish() -> None:
        for event in ticks:
            harness.transport.publish(Topics.MARKET, event, "AB")

    assert asyncio.run(harness.run_until(lambda: len(harness.received) == 2, publish)) is None
    assert [event for _, event in harness.received] == [ticks[0], ticks[2]]
    assert [(letter.error_type, letter.reason) for letter in harness.letters] == [
        ("Boom", "strategy bug")
    ]
    assert CODEC.decode(harness.letters[0].raw) == ticks[1]


def test_positions_stay_uncommitted_while_the_commit_barrier_refuses(
    broker: Broker, prefix: str
) -> None:
    ticks = [tick("AB", str(10 + n), n) for n in range(3)]
    refusing = Harness(broker, prefix)
    refusing.transport.subscribe("portfolio", (Topics.MARKET,), refusing.collect)
    calls = 0

    async def not_durable() -> bool:
        nonlocal calls
        calls += 1
        return False

    refusing.transport.add_commit_barrier("portfolio", not_durable)

    async def publish() -> None:
        for event in ticks:
            refusing.transport.publish(Topics.MARKET, event, "AB")

    assert asyncio.run(refusing.run_until(lambda: len(refusing.received) == 3, publish)) is None
    assert calls >= 1

    # Nothing was committed, so the group gets every event again.
    again = Harness(broker, prefix)
    again.transport.subscribe("portfolio", (Topics.MARKET,), again.collect)
    assert asyncio.run(again.run_until(lambda: len(again.received) == 3)) is None
    assert [event for _, event in again.received] == ticks


# -- parameters and secrets --------------------------------------------------------------------

SECRET = "hunter2-do-not-print"


def test_parameters_are_checked_with_clear_messages() -> None:
    manager = PluginManager().load()
    with pytest.raises(ConfigError) as caught:
        manager.create(
            "transport",
            "redpanda",
            {
                "bootstrap_servers": "no-port",
                "partitions": 0,
                "max_batch": True,
                "colour": "blue",
            },
        )
    message = str(caught.value)
    assert "redpanda transport: invalid parameters" in message
    assert "bootstrap_servers: broker address 'no-port' is not host:port" in message
    assert "partitions: Input should be greater than or equal to 1" in message
    assert "max_batch: true is a boolean; it takes int" in message
    assert "colour: unknown parameter" in message
    with pytest.raises(ConfigError, match="needs sasl_username, sasl_password"):
        manager.create(
            "transport",
            "redpanda",
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
        )
    with pytest.raises(ConfigError, match="SASL options are set but security_protocol is"):
        manager.create("transport", "redpanda", {"sasl_username": "u", "sasl_password": SECRET})
    with pytest.raises(ConfigError, match=r"ssl_cafile '/nonexistent/ca\.pem' is not a readable"):
        manager.create(
            "transport",
            "redpanda",
            {"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
        )
    with pytest.raises(ConfigError, match="unknown stage boundary 'ticks'"):
        manager.create("transport", "redpanda", {"topics": {"ticks": "x"}})
    with pytest.raises(
        ConfigError,
        match=r"request_timeout_ms \(10000\) must be above session_timeout_ms \(10000\): "
        "joining a consumer group may wait that long",
    ):
        manager.create("transport", "redpanda", {"request_timeout_ms": 10_000})


def _self_signed_ca(directory: Path) -> Path:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a CA file")
    cert, key = directory / "ca.pem", directory / "ca.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=tradeloom-test-ca"),
        ],
        check=True,
        capture_output=True,
    )
    return cert


def test_security_options_reach_the_clients_and_secrets_stay_hidden(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = _self_signed_ca(tmp_path)
    transport = RedpandaTransport(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="trader",
        sasl_password=SECRET,
        ssl_cafile=str(ca),
        request_timeout_ms=500,
        session_timeout_ms=400,
        heartbeat_interval_ms=100,
        operation_timeout_seconds=0.5,
    )
    kwargs = transport.options.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "trader"
    assert kwargs["sasl_plain_password"] == SECRET  # only handed to aiokafka
    context = kwargs["ssl_context"]
    assert any(
        ("commonName", "tradeloom-test-ca") in subject[0]
        for subject in (cert["subject"] for cert in context.get_ca_certs())
    )
    for shown in (repr(transport), repr(transport.options), str(transport.options.model_dump())):
        assert SECRET not in shown
    assert "trader" in transport.options.describe()

    # A connection that fails: the error and every log line (aiokafka's too) keep the secret.
    caplog.set_level(logging.DEBUG)
    transport.bind(
        codec=CODEC,
        on_dead_letter=lambda letter: None,
        logger=logging.getLogger("test.redpanda.secrets"),
        clock=WallClock(),
        settings=Settings(
            reconnect={"max_attempts": 1, "base_delay_seconds": 0.01, "max_delay_seconds": 0.01}
        ),
    )
    with pytest.raises(Exception) as caught:
        asyncio.run(transport.start())
    assert "gave up after 1 reconnection attempts" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caplog.records, "the failed attempts are logged"
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text


def test_an_event_the_broker_can_never_take_stops_the_transport(
    broker: Broker, prefix: str
) -> None:
    from tradeloom.events import Rejection, Signal
    from tradeloom_redpanda.connection import BrokerSetupError

    harness = Harness(broker, prefix)
    signal = Signal(
        event_id=uuid4(), ts=T0, strategy_id="s", instrument="AB", side=Side.BUY, quantity=1
    )
    huge = Rejection(event_id=uuid4(), ts=T0, signal=signal, validator="v", reason="x" * 2_000_000)

    async def publish() -> None:
        harness.transport.publish(Topics.REJECTIONS, huge, "AB")

    error = asyncio.run(harness.run_until(lambda: False, publish))
    assert isinstance(error, BrokerSetupError)
    assert f"refused an event for topic '{prefix}rejections'" in str(error)
    assert "MessageSizeTooLargeError" in str(error)


def test_lag_of_partitions_moved_away_in_a_rebalance_is_not_kept(
    broker: Broker, prefix: str
) -> None:
    harness = Harness(broker, prefix)
    harness.transport.subscribe("strategy", (Topics.MARKET,), harness.collect)
    transport = harness.transport
    after_revocation: list[dict[str, int]] = []

    async def publish_then_revoke() -> None:
        for n in range(5):
            transport.publish(Topics.MARKET, tick("AB", f"{100 + n}", n), "AB")
        await transport.delivered()
        async with asyncio.timeout(GUARD_SECONDS):
            while "strategy/market" not in harness.status.consumer_lag:
                await asyncio.sleep(0.02)
        role = transport._roles["strategy"]
        # What aiokafka calls when the group gives this member's partitions to another one.
        await _Rebalance(transport, role).on_partitions_revoked(list(role.assigned))
        role.lag_measured = 0.0
        await transport._measure_lag(role)
        after_revocation.append(dict(harness.status.consumer_lag))

    error = asyncio.run(harness.run_until(lambda: bool(after_revocation), publish_then_revoke))
    assert error is None
    assert len(harness.received) == 5
    assert len(after_revocation) == 1 and "strategy/market" not in after_revocation[0]


def test_lag_counts_the_partitions_not_yet_reached(
    broker: Broker, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow consumer that has handled records of some partitions is behind on all of them.
    import tradeloom_redpanda.transport as transport_module

    monkeypatch.setattr(transport_module, "LAG_INTERVAL_SECONDS", 0.0)
    publisher = Harness(broker, prefix)
    instruments = [f"I{n}" for n in range(12)]

    async def publish() -> None:
        for n in range(36):
            name = instruments[n % len(instruments)]
            publisher.transport.publish(Topics.MARKET, tick(name, f"{100 + n}", n), name)
        await publisher.transport.delivered()

    assert asyncio.run(publisher.run_until(lambda: True, publish)) is None
    consumer = Harness(broker, prefix, max_batch=1)
    seen: list[tuple[int, int | None]] = []  # (records handled before, lag measured then)

    def handle_slowly(topic: str, event: Event) -> None:
        seen.append((len(consumer.received), consumer.status.consumer_lag.get("strategy/market")))
        consumer.collect(topic, event)
        time.sleep(0.005)

    consumer.transport.subscribe("strategy", (Topics.MARKET,), handle_slowly)
    assert asyncio.run(consumer.run_until(lambda: len(consumer.received) == 36)) is None
    measured = [(handled, lag) for handled, lag in seen if lag is not None]
    assert measured, seen
    assert all(lag == 36 - handled for handled, lag in measured), measured
    assert measured[0][0] <= 2, measured  # from the first records on, not once all are reached


def test_a_cancel_crosses_the_broker_behind_its_signal_and_its_order(
    broker: Broker, prefix: str
) -> None:
    harness = Harness(broker, prefix)
    harness.transport.subscribe("risk", (Topics.SIGNALS,), harness.collect)
    harness.transport.subscribe("execution", (Topics.ORDERS,), harness.collect)
    signal = Signal(
        event_id=uuid4(),
        ts=T0,
        strategy_id="s",
        instrument="AB",
        side=Side.BUY,
        quantity=Decimal(1),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("9.5"),
    )
    order = Order(
        **{**signal.model_dump(exclude={"type"}), "event_id": uuid4()}, signal_id=signal.event_id
    )
    cancel = Cancel(event_id=uuid4(), ts=T0, signal=signal)

    async def publish() -> None:
        for topic, event in (
            (Topics.SIGNALS, signal),
            (Topics.SIGNALS, cancel),
            (Topics.ORDERS, order),
            (Topics.ORDERS, cancel),
        ):
            harness.transport.publish(topic, event, "AB")
        await harness.transport.delivered()

    error = asyncio.run(harness.run_until(lambda: len(harness.received) == 4, publish))
    assert error is None and harness.letters == []
    by_topic: dict[str, list[Event]] = {}
    for topic, event in harness.received:
        by_topic.setdefault(topic, []).append(event)
    assert by_topic == {Topics.SIGNALS: [signal, cancel], Topics.ORDERS: [order, cancel]}


def test_a_stop_does_not_wait_for_a_rebalance_that_does_not_end(
    broker: Broker, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # aiokafka's poll waits for the group's new assignment without a time limit; a rebalance
    # may never end (a member gone mid-join). The stop waits a bounded time, then stops.
    harness = Harness(broker, prefix, operation_timeout_seconds=0.5)
    harness.transport.subscribe("strategy", (Topics.MARKET,), harness.collect)
    stuck = asyncio.Event()
    stopped_after: list[float] = []

    async def poll_that_waits_for_an_assignment(**_: Any) -> Any:
        stuck.set()
        await asyncio.Event().wait()  # never set

    async def stop_while_stuck() -> None:
        consumer = harness.transport._roles["strategy"].consumer
        consumer.getmany = poll_that_waits_for_an_assignment  # type: ignore[method-assign]
        await asyncio.wait_for(stuck.wait(), GUARD_SECONDS)
        stopped_after.append(time.monotonic())
        harness.transport.stop_consuming()

    with caplog.at_level(logging.WARNING, logger="test.redpanda.transport"):
        error = asyncio.run(harness.run_until(lambda: bool(stopped_after), stop_while_stuck))
    assert error is None
    # The bound (3 x 0.5 s and one poll of 0.1 s), then flushing and closing the clients; without
    # it the stop waited until the test's guard (30 s) ran out.
    assert time.monotonic() - stopped_after[0] < 8.0
    assert "1 consuming role(s) still busy after 1.6 s (waiting for their group" in caplog.text


def test_a_slow_catch_up_keeps_the_member_in_its_group(broker: Broker, prefix: str) -> None:
    # Catching up (reading the journal, the portfolio's positions) may take longer than the
    # session timeout (1 s here). It ran inside the rebalance listener, where aiokafka sends
    # no heartbeat: when a second member joined meanwhile, the first was expelled, its commits
    # refused, and the second handled its records again. No record is handled before the
    # catch-up of its partition is done.
    ticks = [tick(f"I{n % 7}", str(10 + n), n) for n in range(40)]
    first, second = Harness(broker, prefix), Harness(broker, prefix)
    catching_up: list[float] = []

    async def slow_catch_up() -> None:
        catching_up.append(time.monotonic())
        await asyncio.sleep(2.5)

    for harness in (first, second):
        harness.transport.subscribe("strategy", (Topics.MARKET,), harness.collect)
    first.transport.add_assignment_hook("strategy", slow_catch_up)
    settled: list[bool] = []

    async def second_joins() -> None:
        while not catching_up:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await second.run_until(lambda: bool(settled))

    async def publish_and_settle() -> None:
        for event in ticks:
            first.transport.publish(Topics.MARKET, event, event.instrument)
        while len(first.received) + len(second.received) < len(ticks):
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.0)  # a member expelled meanwhile would hand records on again
        settled.append(True)

    async def main() -> BaseException | None:
        joining = asyncio.ensure_future(second_joins())
        error = await first.run_until(lambda: bool(settled), publish_and_settle)
        await joining
        return error

    assert asyncio.run(main()) is None
    handled = [event for harness in (first, second) for _, event in harness.received]
    assert sorted(e.event_id for e in handled) == sorted(e.event_id for e in ticks)
    assert first.transport.stats.commits_failed == 0
