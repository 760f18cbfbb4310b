"""The access token never shows in reprs, logs or error messages."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import anyio
import pytest
from tradeloom.backoff import ReconnectExhausted
from tradeloom.components import FeedContext
from tradeloom.errors import ConfigError
from websockets.asyncio.server import ServerConnection

from kite_frames import ltp_packet, message
from kite_server import Session, free_port, kite_server
from tradeloom_kite import KiteAuthenticationError, KiteFeed

TOKEN = "Sup3rS3cretT0ken"
GUARD_SECONDS = 15


def make_feed(url: str) -> KiteFeed:
    return KiteFeed(url=url, api_key="key123", access_token=TOKEN, instruments={"408065": "INFY"})


def test_repr_hides_the_token() -> None:
    feed = make_feed("wss://ws.kite.trade")
    assert TOKEN not in repr(feed)
    assert TOKEN not in str(feed)
    assert TOKEN not in repr(feed.params)
    assert "access_token='***'" in repr(feed)
    assert feed.params.access_token.get_secret_value() == TOKEN


def test_invalid_params_error_does_not_echo_the_token() -> None:
    with pytest.raises(ConfigError) as caught:
        KiteFeed(api_key="key123", access_token=TOKEN, instruments={"INFY": "408065"})
    assert "instrument token 'INFY' is not a positive integer" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.anyio
async def test_debug_logs_of_a_session_are_redacted(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send(f'{{"type": "error", "data": "token {TOKEN} rejected"}}')
        await ws.send(message(ltp_packet(408065, 100)))
        await ws.wait_closed()

    caplog.set_level(logging.DEBUG)
    async with kite_server(script) as server:
        ticks = make_feed(server.url).events(make_ctx())
        with anyio.fail_after(GUARD_SECONDS):
            await ticks.__anext__()
        await ticks.aclose()  # type: ignore[attr-defined]

    assert TOKEN in server.sessions[0].path  # it was sent to the server...
    # ...and the websockets handshake line that carries it was logged, redacted.
    assert "> GET /?api_key=key123&access_token=*** HTTP/1.1" in caplog.text
    assert "token *** rejected" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.anyio
async def test_a_short_token_is_redacted_in_the_url_without_mangling_other_text(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        await ws.send('{"type": "error", "data": "Invalid instrument token"}')
        await ws.send(message(ltp_packet(408065, 100)))
        await ws.wait_closed()

    caplog.set_level(logging.DEBUG)
    async with kite_server(script) as server:
        feed = KiteFeed(
            url=server.url, api_key="key123", access_token="e", instruments={"408065": "INFY"}
        )
        ticks = feed.events(make_ctx())
        with anyio.fail_after(GUARD_SECONDS):
            await ticks.__anext__()
        await ticks.aclose()  # type: ignore[attr-defined]

    assert "> GET /?api_key=key123&access_token=*** HTTP/1.1" in caplog.text
    assert "kite: server error: Invalid instrument token" in caplog.text


@pytest.mark.anyio
async def test_connection_errors_do_not_leak_the_token(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    feed = make_feed(f"ws://127.0.0.1:{free_port()}")
    with anyio.fail_after(GUARD_SECONDS), pytest.raises(ReconnectExhausted) as caught:
        await feed.events(make_ctx(max_attempts=2)).__anext__()
    assert "reconnection attempt 2" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)
    assert TOKEN not in "".join(traceback.format_exception(caught.value))


@pytest.mark.anyio
async def test_refused_credentials_do_not_leak_the_token(
    make_ctx: Callable[..., FeedContext], caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection, session: Session) -> None:
        raise AssertionError("unreachable")

    caplog.set_level(logging.DEBUG)
    async with kite_server(script, reject_status=403) as server:
        with anyio.fail_after(GUARD_SECONDS), pytest.raises(KiteAuthenticationError) as caught:
            await make_feed(server.url).events(make_ctx()).__anext__()
    assert "< HTTP/1.1 403" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in "".join(traceback.format_exception(caught.value))


def test_redaction_in_a_quoted_url_keeps_the_closing_quote() -> None:
    feed = KiteFeed(api_key="k", access_token="e", instruments={"408065": "INFY"})
    text = "InvalidURI('wss://ws.kite.trade/?api_key=k&access_token=e')"
    assert feed._redact(text) == "InvalidURI('wss://ws.kite.trade/?api_key=k&access_token=***')"
