"""The kite feed against a real WebSocket server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from tradeloom.backoff import ReconnectExhausted
from tradeloom.components import DeadLetter, FeedContext
from tradeloom.events import MarketTick
from websockets.asyncio.server import ServerConnection

from kite_frames import (
    CLOCK_NOW,
    HEARTBEAT,
    full_packet,
    index_packet,
    ltp_packet,
    message,
    quote_packet,
)
from kite_server import Session, free_port, kite_server, mute_server
from tradeloom_kite import KiteAuthenticationError, KiteFeed

pytestmark = pytest.mark.anyio

INFY, TATAMOTORS, NIFTY, UNKNOWN = 408065, 884737, 256265, 999_001
INSTRUMENTS = {str(INFY): "INFY", str(TATAMOTORS): "TATAMOTORS", str(NIFTY): "NIFTY 50"}
GUARD_SECONDS = 15  # only keeps a broken test from hanging; no speed is asserted


def make_feed(url: str, mode: str = "full", open_timeout_seconds: float = 10.0) -> KiteFeed:
    return KiteFeed(
        url=url,
        api_key="key123",
        access_token="tok-456",
        instruments=INSTRUMENTS,
        mode=mode,
        open_timeout_seconds=open_timeout_seconds,
    )


async def take(ticks: AsyncIterator[MarketTick], count: int) -> list[MarketTick]:
    taken: list[MarketTick] = []
    with anyio.fail_after(GUARD_SECONDS):
        async for tick in ticks:
            taken.append(tick)
            if len(taken) == count:
                break
    return taken


async def hold_open(ws: ServerConnection) -> None:
    await ws.wait_closed()


async def hold_open_script(ws: ServerConnection, session: Session) -> None:
    await hold_open(ws)


async def test_subscribes_then_streams_ticks_with_exact_prices(
    make_ctx: Callable[..., FeedContext],
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(HEARTBEAT)
        await ws.send(
            message(
                ltp_packet(INFY, 152345),
                quote_packet(TATAMOTORS, 78005, last_quantity=5, volume=1_000_000),
            )
        )
        await ws.send(
            message(
                full_packet(
                    INFY,
                    152350,
                    last_quantity=10,
                    volume=2_000_123,
                    exchange_timestamp=1_700_000_000,
                    bids=[(100, 152340, 3)],
                    asks=[(80, 152360, 2)],
                ),
                full_packet(INFY, 152355, last_quantity=1, volume=2_000_124),
                index_packet(NIFTY, 2171050, 2180000, 2160025, 2165000, 2170000, 1050),
            )
        )
        await hold_open(ws)

    async with kite_server(script) as server:
        feed = make_feed(server.url)
        ticks = feed.events(make_ctx())
        got = await take(ticks, 5)
        await ticks.aclose()  # type: ignore[attr-defined]

    (session,) = server.sessions
    assert session.subscribe == {"a": "subscribe", "v": [NIFTY, INFY, TATAMOTORS]}
    assert session.mode == {"a": "mode", "v": ["full", [NIFTY, INFY, TATAMOTORS]]}
    query = parse_qs(urlsplit(session.path).query)
    assert query == {"api_key": ["key123"], "access_token": ["tok-456"]}

    ltp, quote, full, full_no_ts, index = got
    assert (ltp.instrument, ltp.last_price, ltp.volume, ltp.bid) == (
        "INFY",
        Decimal("1523.45"),
        None,
        None,
    )
    assert ltp.ts == CLOCK_NOW
    assert quote.instrument == "TATAMOTORS"
    assert str(quote.last_price) == "780.05"
    assert (quote.last_quantity, quote.volume) == (Decimal(5), Decimal(1_000_000))
    assert full.last_price == Decimal("1523.50")
    assert (full.bid, full.ask) == (Decimal("1523.40"), Decimal("1523.60"))
    assert (full.last_quantity, full.volume) == (Decimal(10), Decimal(2_000_123))
    assert full.ts == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert full.ts.tzinfo is not None
    # A full packet without an exchange timestamp is stamped by the pipeline's clock.
    assert full_no_ts.ts == CLOCK_NOW and full_no_ts.bid is None
    assert (index.instrument, index.last_price, index.volume) == (
        "NIFTY 50",
        Decimal("21710.50"),
        None,
    )
    assert len({tick.event_id for tick in got}) == 5
    assert all(tick.event_id.version == 7 for tick in got)
    assert feed.bad_packets == 0 and feed.connections == 1


async def test_zero_volume_is_kept_and_zero_last_quantity_is_none(
    make_ctx: Callable[..., FeedContext],
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(message(quote_packet(INFY, 100), full_packet(TATAMOTORS, 200)))
        await hold_open(ws)

    async with kite_server(script) as server:
        ticks = make_feed(server.url).events(make_ctx())
        got = await take(ticks, 2)
        await ticks.aclose()  # type: ignore[attr-defined]
    # No trade yet today: a volume of 0 is a real volume, a last quantity of 0 is no trade.
    assert [(t.volume, t.last_quantity) for t in got] == [(Decimal(0), None), (Decimal(0), None)]


async def test_malformed_frames_become_dead_letters_and_the_feed_keeps_running(
    make_ctx: Callable[..., FeedContext], dead_letters: list[DeadLetter]
) -> None:
    truncated = message(ltp_packet(INFY, 100), quote_packet(INFY, 200))[:-5]
    trailing = message(ltp_packet(INFY, 300)) + b"\xde\xad"
    wrong_size = message(b"\x00\x06\x3a\x01" + b"\x00" * 46, ltp_packet(TATAMOTORS, 400))
    frames: list[bytes | str] = [
        truncated,
        trailing,
        wrong_size,
        b"",
        "this is not json",
        '{"type": "error", "data": "Invalid mode"}',
        '{"type": "order", "data": {"order_id": "1"}}',
        message(ltp_packet(UNKNOWN, 500)),
        message(ltp_packet(INFY, 0)),
        HEARTBEAT,
        message(ltp_packet(INFY, 987654)),
    ]

    async def script(ws: ServerConnection, session: Session) -> None:
        for frame in frames:
            await ws.send(frame)
        await hold_open(ws)

    async with kite_server(script) as server:
        feed = make_feed(server.url)
        ticks = feed.events(make_ctx())
        got = await take(ticks, 4)
        await ticks.aclose()  # type: ignore[attr-defined]

    # The good packets around the bad ones all arrive, in order.
    assert [(t.instrument, t.last_price) for t in got] == [
        ("INFY", Decimal("1.00")),
        ("INFY", Decimal("3.00")),
        ("TATAMOTORS", Decimal("4.00")),
        ("INFY", Decimal("9876.54")),
    ]
    summary = [(d.error_type, d.location) for d in dead_letters]
    assert summary == [
        ("bad_packet", "packet 2"),
        ("bad_packet", "message"),
        ("bad_packet", "packet 1"),
        ("bad_packet", "message"),
        ("bad_message", "message"),
        ("unknown_instrument", "packet 1"),
        ("bad_packet", "packet 1"),
    ]
    assert all(d.source == "kite" and d.ts == CLOCK_NOW for d in dead_letters)
    assert dead_letters[0].raw == truncated
    assert "packet truncated" in dead_letters[0].reason
    assert dead_letters[1].raw == trailing and "length mismatch" in dead_letters[1].reason
    assert "unknown packet size 50 bytes" in dead_letters[2].reason
    assert dead_letters[4].raw == b"this is not json"
    assert str(UNKNOWN) in dead_letters[5].reason
    assert "last_price" in dead_letters[6].reason and "INFY" in dead_letters[6].reason
    assert feed.bad_packets == 6
    assert feed.unknown_instruments == 1
    assert feed.connections == 1


async def test_server_error_messages_are_logged(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send('{"type": "error", "data": "Invalid instrument token"}')
        await ws.send(message(ltp_packet(INFY, 100)))
        await hold_open(ws)

    caplog.set_level(logging.INFO, logger="test")
    async with kite_server(script) as server:
        ticks = make_feed(server.url).events(make_ctx())
        await take(ticks, 1)
        await ticks.aclose()  # type: ignore[attr-defined]
    assert "kite: server error: Invalid instrument token" in caplog.text


async def test_reconnects_and_resubscribes_after_the_server_drops_the_connection(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(message(ltp_packet(INFY, 100 * session.number)))
        if session.number == 1:
            await ws.close()  # the server drops the first connection
        else:
            await hold_open(ws)

    caplog.set_level(logging.WARNING, logger="test")
    ctx = make_ctx()
    async with kite_server(script) as server:
        feed = make_feed(server.url, mode="quote")
        ticks = feed.events(ctx)
        got = await take(ticks, 2)
        await ticks.aclose()  # type: ignore[attr-defined]
    assert ctx.reconnecting == {}  # data again: no longer reconnecting

    assert [t.last_price for t in got] == [Decimal("1.00"), Decimal("2.00")]
    assert [s.number for s in server.sessions] == [1, 2]
    for session in server.sessions:
        assert session.subscribe == {"a": "subscribe", "v": [NIFTY, INFY, TATAMOTORS]}
        assert session.mode == {"a": "mode", "v": ["quote", [NIFTY, INFY, TATAMOTORS]]}
    assert feed.connections == 2
    assert "reconnection attempt 1" in caplog.text


async def test_every_connection_that_delivers_ticks_starts_a_fresh_backoff_series(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(message(ltp_packet(INFY, 100 * session.number)))
        await ws.close()  # every connection delivers a tick, then drops

    caplog.set_level(logging.WARNING, logger="test")
    ctx = make_ctx(max_attempts=2)
    async with kite_server(script) as server:
        feed = make_feed(server.url)
        ticks = feed.events(ctx)
        got = await take(ticks, 5)  # more connections than max_attempts allows in a row
        await ticks.aclose()  # type: ignore[attr-defined]
    assert [t.last_price for t in got] == [Decimal(n) for n in range(1, 6)]
    assert feed.connections == 5
    assert "reconnection attempt 1 " in caplog.text
    assert "reconnection attempt 2" not in caplog.text


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(HEARTBEAT, id="heartbeat"),
        pytest.param('{"type": "error", "data": "Too many instruments"}', id="json-error"),
        pytest.param('{"type": "message", "data": "hello"}', id="json-message"),
        pytest.param(message(ltp_packet(UNKNOWN, 100)), id="unknown-instrument"),
        pytest.param(message(ltp_packet(INFY, 0)), id="bad-packet"),
    ],
)
async def test_a_connection_without_market_data_does_not_reset_the_backoff(
    frame: bytes | str,
    make_ctx: Callable[..., FeedContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(frame)
        await ws.close()

    caplog.set_level(logging.WARNING, logger="test")
    async with kite_server(script) as server:
        feed = make_feed(server.url)
        with anyio.fail_after(GUARD_SECONDS), pytest.raises(ReconnectExhausted) as caught:
            await feed.events(make_ctx(max_attempts=3)).__anext__()
    assert caught.value.attempts == 3
    assert feed.connections == 4
    for attempt in (1, 2, 3):
        assert f"reconnection attempt {attempt} " in caplog.text


async def test_reconnecting_stays_shown_until_a_connection_delivers_ticks(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        if session.number == 2:  # no market data: still reconnecting
            await ws.send(HEARTBEAT)
            await ws.send('{"type": "error", "data": "Too many requests"}')
            await anyio.sleep(0.3)
            await ws.close()
            return
        await ws.send(message(ltp_packet(INFY, 100 * session.number)))
        if session.number == 1:
            await ws.close()
        else:
            await hold_open(ws)

    caplog.set_level(logging.WARNING, logger="test")
    ctx = make_ctx()
    shown: list[bool] = [False]  # whether the health check shows the feed reconnecting

    async def watch() -> None:
        while True:
            if bool(ctx.reconnecting) != shown[-1]:
                shown.append(bool(ctx.reconnecting))
            await anyio.sleep(0.005)

    async with kite_server(script) as server, anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        ticks = make_feed(server.url).events(ctx)
        got = await take(ticks, 2)
        await ticks.aclose()  # type: ignore[attr-defined]
        tasks.cancel_scope.cancel()

    assert [t.last_price for t in got] == [Decimal("1.00"), Decimal("3.00")]
    assert shown[:2] == [False, True] and shown.count(True) == 1  # never cleared in between
    assert ctx.reconnecting == {}
    # The heartbeat-only connection counts as a failed attempt: the series goes on.
    assert "reconnection attempt 2 " in caplog.text


async def test_gives_up_after_max_attempts_when_the_server_is_gone(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(message(ltp_packet(INFY, 100)))
        await hold_open(ws)

    caplog.set_level(logging.WARNING, logger="test")
    ctx = make_ctx()
    shown: dict[str, str] = {}

    async def watch() -> None:  # what the health check sees while the feed reconnects
        while not ctx.reconnecting:
            await anyio.sleep(0.01)
        shown.update(ctx.reconnecting)

    async with kite_server(script) as server:
        feed = make_feed(server.url)
        ticks = feed.events(ctx)
        first = await take(ticks, 1)
        await server.stop()
        with anyio.fail_after(GUARD_SECONDS):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                with pytest.raises(ReconnectExhausted) as caught:
                    await ticks.__anext__()

    assert list(shown) == ["kite feed"]
    assert shown["kite feed"].startswith("connection lost since ")
    assert ctx.reconnecting == {}  # given up: said by the runtime instead

    assert first[0].last_price == Decimal("1.00")
    assert caught.value.attempts == 3
    assert "gave up after 3 reconnection attempts" in str(caught.value)
    assert [s.number for s in server.sessions] == [1]
    for attempt in (1, 2, 3):
        assert f"reconnection attempt {attempt} " in caplog.text
    assert "reconnection attempt 4" not in caplog.text
    assert "giving up after 3 reconnection attempts" in caplog.text


async def test_gives_up_when_nothing_ever_listens(make_ctx: Callable[..., FeedContext]) -> None:
    feed = make_feed(f"ws://127.0.0.1:{free_port()}")
    ticks = feed.events(make_ctx(max_attempts=2))
    with anyio.fail_after(GUARD_SECONDS), pytest.raises(ReconnectExhausted) as caught:
        await ticks.__anext__()
    assert caught.value.attempts == 2
    assert feed.connections == 0
    assert caught.value.last_error is not None


async def test_open_timeout_bounds_a_stalled_handshake(
    make_ctx: Callable[..., FeedContext],
) -> None:
    release = anyio.Event()
    handshakes = 0

    async def stall() -> None:
        nonlocal handshakes
        handshakes += 1
        await release.wait()

    async with kite_server(hold_open_script, before_handshake=stall) as server:
        feed = make_feed(server.url, open_timeout_seconds=0.2)
        try:
            # With the library's default timeout (10 s) each attempt would outlast the guard.
            with anyio.fail_after(GUARD_SECONDS), pytest.raises(ReconnectExhausted) as caught:
                await feed.events(make_ctx(max_attempts=2)).__anext__()
        finally:
            release.set()
    assert caught.value.attempts == 2
    assert "TimeoutError" in str(caught.value.last_error)
    assert handshakes == 3
    assert feed.connections == 0


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_rejected_credentials_fail_at_once_without_retrying(
    status: int, make_ctx: Callable[..., FeedContext]
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        raise AssertionError("the handshake should have been refused")

    handshakes = 0

    async def count() -> None:
        nonlocal handshakes
        handshakes += 1

    async with kite_server(script, reject_status=status, before_handshake=count) as server:
        feed = make_feed(server.url)
        with anyio.fail_after(GUARD_SECONDS), pytest.raises(KiteAuthenticationError) as caught:
            await feed.events(make_ctx(max_attempts=5)).__anext__()
    assert f"HTTP {status}" in str(caught.value)
    assert "access_token" in str(caught.value)
    assert server.sessions == []
    assert handshakes == 1


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_other_http_refusals_are_retried(
    status: int, make_ctx: Callable[..., FeedContext]
) -> None:
    handshakes = 0

    async def count() -> None:
        nonlocal handshakes
        handshakes += 1

    async with kite_server(
        hold_open_script, reject_status=status, before_handshake=count
    ) as server:
        feed = make_feed(server.url)
        with anyio.fail_after(GUARD_SECONDS), pytest.raises(ReconnectExhausted) as caught:
            await feed.events(make_ctx(max_attempts=2)).__anext__()
    assert caught.value.attempts == 2
    assert f"HTTP {status}" in str(caught.value.last_error)
    assert handshakes == 3


async def test_close_stops_the_feed_without_reconnecting(
    make_ctx: Callable[..., FeedContext],
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(message(ltp_packet(INFY, 100)))
        await hold_open(ws)

    async with kite_server(script) as server:
        feed = make_feed(server.url)
        ticks = feed.events(make_ctx())
        await take(ticks, 1)
        await feed.close()
        with anyio.fail_after(GUARD_SECONDS):
            rest = [tick async for tick in ticks]
    assert rest == []
    assert feed.connections == 1
    assert len(server.sessions) == 1


async def test_closing_the_generator_at_a_tick_closes_the_connection_normally(
    make_ctx: Callable[..., FeedContext],
) -> None:
    # The pipeline closes a feed's generator where it waits at a yield (a stop): a normal
    # close (1000), not "internal error" (1011), which is what leaving `async with` on an
    # exception sends.
    codes: list[int | None] = []

    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(message(ltp_packet(INFY, 100)))
        await ws.send(message(ltp_packet(INFY, 101)))
        await hold_open(ws)
        codes.append(ws.close_code)

    async with kite_server(script) as server:
        feed = make_feed(server.url)
        ticks = feed.events(make_ctx())
        await take(ticks, 1)
        with anyio.fail_after(GUARD_SECONDS):
            await ticks.aclose()  # type: ignore[attr-defined]
            while not codes:
                await anyio.sleep(0.01)
    assert codes == [1000]


async def test_close_during_the_handshake_stops_the_feed(
    make_ctx: Callable[..., FeedContext],
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        while True:
            await ws.send(message(ltp_packet(INFY, 100)))
            await anyio.sleep(0.05)

    started, release = anyio.Event(), anyio.Event()

    async def hold_up() -> None:
        started.set()
        await release.wait()

    got: list[MarketTick] = []
    async with kite_server(script, before_handshake=hold_up) as server:
        feed = make_feed(server.url)

        async def consume() -> None:
            async for tick in feed.events(make_ctx()):
                got.append(tick)

        with anyio.fail_after(GUARD_SECONDS):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await started.wait()  # the feed waits for the server's handshake answer
                await feed.close()
                release.set()  # the server answers after close(): the feed must not use it
    assert got == []
    assert feed.connections == 0
    assert all((s.subscribe, s.mode) == (None, None) for s in server.sessions)


async def test_close_during_a_reconnection_wait_ends_the_feed_at_once(
    make_ctx: Callable[..., FeedContext],
) -> None:
    feed = make_feed(f"ws://127.0.0.1:{free_port()}")
    ctx = make_ctx(max_attempts=0, base_delay_seconds=60, max_delay_seconds=60, jitter=0)
    rest: list[MarketTick] = []

    async def consume() -> None:
        rest.extend([tick async for tick in feed.events(ctx)])

    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            while not ctx.reconnecting:  # the feed now waits 60 s before trying again
                await anyio.sleep(0.01)
            await feed.close()
    assert rest == [] and feed.connections == 0


@pytest.mark.parametrize(
    "lost_first",
    [pytest.param(False, id="first-handshake"), pytest.param(True, id="reconnection-handshake")],
)
async def test_close_cuts_a_stalled_handshake_short(
    lost_first: bool, make_ctx: Callable[..., FeedContext]
) -> None:
    ctx = make_ctx(max_attempts=0)
    got: list[MarketTick] = []
    ended = anyio.Event()
    ended_at = closed_at = 0.0

    async def consume() -> None:
        nonlocal ended_at
        async for tick in feed.events(ctx):
            got.append(tick)
        ended_at = anyio.current_time()
        ended.set()

    async with mute_server(hang_up_first=1 if lost_first else 0) as server:
        # Far longer than the test may take: only close() can end the handshake in time.
        feed = make_feed(server.url, open_timeout_seconds=30)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            with anyio.fail_after(GUARD_SECONDS):
                await server.asked.wait()  # the feed waits for the answer to its upgrade
            assert bool(ctx.reconnecting) is lost_first
            closed_at = anyio.current_time()
            await feed.close()
            with anyio.move_on_after(5):
                await ended.wait()
            tasks.cancel_scope.cancel()  # only stops a feed that close() failed to stop
    assert ended.is_set(), "close() left the opening handshake running"
    assert ended_at - closed_at < 2
    assert got == [] and feed.connections == 0
    assert server.connections == (2 if lost_first else 1)
    assert ctx.reconnecting == {}


@pytest.mark.parametrize("stop", ["close", "cancel"])
async def test_a_feed_stopped_while_reconnecting_is_no_longer_shown_reconnecting(
    stop: str, make_ctx: Callable[..., FeedContext]
) -> None:
    feed = make_feed(f"ws://127.0.0.1:{free_port()}")
    ctx = make_ctx(max_attempts=0, base_delay_seconds=60, max_delay_seconds=60, jitter=0)

    async def consume() -> None:
        async for _ in feed.events(ctx):
            pass

    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            while not ctx.reconnecting:  # the feed now waits 60 s before trying again
                await anyio.sleep(0.01)
            if stop == "close":
                await feed.close()
            else:
                tasks.cancel_scope.cancel()  # the consuming task is cancelled
    assert ctx.reconnecting == {}
