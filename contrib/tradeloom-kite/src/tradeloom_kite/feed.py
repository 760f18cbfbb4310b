"""The ``kite`` feed: live ticks from the Zerodha Kite Connect WebSocket ticker."""

from __future__ import annotations

import inspect
import json
import logging
import re
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import anyio
from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator
from tradeloom.backoff import ReconnectExhausted, backoff_delays
from tradeloom.components import DeadLetter, Feed, FeedContext
from tradeloom.errors import ConfigError, TradeloomError
from tradeloom.events import MarketTick
from tradeloom.params import ParamsModel, parameters_problem
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from tradeloom_kite.packets import KitePacket, PacketError, PacketMode, parse_message

SOURCE = "kite"
DEFAULT_URL = "wss://ws.kite.trade"
REDACTED = "***"
_AUTH_STATUSES = frozenset({400, 401, 403})
MAX_INSTRUMENTS = 3000
"""Kite's limit of instruments on one WebSocket connection."""
_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&#\s'\")\]>]*", re.IGNORECASE)
_MIN_FREE_TEXT_TOKEN = 8
"""Shorter tokens are redacted only in query strings: replacing a short string everywhere would
mangle the text (a real Kite access token has 32 characters)."""
_RECONNECTING = "kite feed"
"""The feed's entry in ``ctx.reconnecting`` while it reconnects (shown by the health check)."""


class KiteAuthenticationError(TradeloomError):
    """The Kite server refused the API key or access token. Retrying cannot help."""


class KiteConnectionError(TradeloomError):
    """A connection to the Kite ticker failed or was lost (the message is redacted)."""


class KiteFeedParams(ParamsModel):
    """The ``[feed.params]`` of the ``kite`` feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = DEFAULT_URL
    api_key: str = Field(min_length=1)
    access_token: SecretStr
    instruments: dict[int, str] = Field(min_length=1)
    mode: Literal["ltp", "quote", "full"] = "full"
    open_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("access_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("access_token must not be empty")
        return value

    @field_validator("instruments", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("instruments must map instrument tokens to symbols")
        if len(value) > MAX_INSTRUMENTS:
            raise ValueError(
                f"{len(value):,} instruments given; Kite allows at most {MAX_INSTRUMENTS:,} "
                "on one WebSocket connection"
            )
        tokens: dict[int, str] = {}
        for key, symbol in value.items():
            text = str(key).strip()
            if not text.isdigit() or not 0 < int(text) < 2**32:
                raise ValueError(
                    f"instrument token {key!r} is not a positive integer below 2**32 "
                    "(use the numeric instrument_token from the Kite instruments list)"
                )
            if not isinstance(symbol, str) or not symbol.strip():
                raise ValueError(f"instrument token {key!r} needs a non-empty symbol")
            token = int(text)
            if token in tokens:
                raise ValueError(
                    f"instrument token {token} is given twice ({tokens[token]!r} and "
                    f"{symbol.strip()!r}); each token names one instrument"
                )
            tokens[token] = symbol.strip()
        return tokens

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = urllib.parse.urlsplit(value)
        query = {key.lower() for key in urllib.parse.parse_qs(parsed.query)}
        if query & {"access_token", "api_key"} or parsed.username or parsed.password:
            # Never echo the value: it holds a credential.
            raise ValueError(
                "put api_key and access_token in their own params, not in the url (as query "
                "parameters or user:password@)"
            )
        try:
            parse_uri(value)
        except InvalidURI as exc:
            raise ValueError(f"{value!r} is not a ws:// or wss:// URL: {exc.msg}") from None
        return value


class KiteFeed(Feed):
    """Market ticks from the Kite Connect v3 WebSocket ticker.

    Connects to ``url`` with the API key and access token, subscribes to the configured
    instrument tokens in ``mode`` and yields a :class:`~tradeloom.events.MarketTick` per quote
    packet, named by the ``instruments`` mapping. Lost connections are re-opened with the
    pipeline's reconnection settings and the subscription is sent again. Malformed messages and
    packets for unknown tokens become dead letters; the feed keeps running.
    """

    def __init__(
        self,
        *,
        api_key: str,
        access_token: SecretStr | str,
        instruments: Mapping[str | int, str],
        mode: Literal["ltp", "quote", "full"] = "full",
        url: str = DEFAULT_URL,
        open_timeout_seconds: float = 10.0,
    ) -> None:
        try:
            self.params = KiteFeedParams(
                url=url,
                api_key=api_key,
                access_token=access_token,
                instruments=instruments,
                mode=mode,
                open_timeout_seconds=open_timeout_seconds,
            )
        except ValidationError as exc:
            raise ConfigError(parameters_problem("kite feed", exc, KiteFeedParams)) from None
        self.bad_packets = 0
        """Malformed messages and packets reported as dead letters."""
        self.unknown_instruments = 0
        """Packets for tokens missing from ``instruments``, reported as dead letters."""
        self.connections = 0
        """Connections opened (the first one and every reconnection)."""
        self._ws: ClientConnection | None = None
        self._closing = False
        self._handshake: anyio.CancelScope | None = None
        """The opening handshake in progress, which :meth:`close` cancels."""
        self._wake: anyio.Event | None = None
        """Set by :meth:`close` to end a wait between reconnection attempts early. Made by each
        :meth:`events` call, so it belongs to that call's event loop."""

    def __repr__(self) -> str:
        return (
            f"KiteFeed(url={self.params.url!r}, api_key={self.params.api_key!r}, "
            f"access_token={REDACTED!r}, mode={self.params.mode!r}, "
            f"instruments={len(self.params.instruments)})"
        )

    # ----------------------------------------------------------------------------------------
    # Connection

    def _connect_url(self) -> str:
        parts = urllib.parse.urlsplit(self.params.url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query += [
            ("api_key", self.params.api_key),
            ("access_token", self.params.access_token.get_secret_value()),
        ]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def _redact(self, text: str) -> str:
        text = _TOKEN_IN_QUERY.sub(lambda match: match.group(1) + REDACTED, text)
        secret = self.params.access_token.get_secret_value()
        if len(secret) < _MIN_FREE_TEXT_TOKEN:
            return text
        for form in {secret, urllib.parse.quote_plus(secret), urllib.parse.quote(secret)}:
            text = text.replace(form, REDACTED)
        return text

    def subscription_messages(self) -> list[str]:
        """The JSON messages sent after every (re)connection: subscribe, then set the mode."""
        tokens = sorted(self.params.instruments)
        return [
            json.dumps({"a": "subscribe", "v": tokens}),
            json.dumps({"a": "mode", "v": [self.params.mode, tokens]}),
        ]

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:
        """Yield ticks until :meth:`close` is called or reconnection attempts run out.

        Raises :class:`~tradeloom.backoff.ReconnectExhausted` when every attempt allowed by
        ``ctx.reconnect`` has failed and :class:`KiteAuthenticationError` when the server
        refuses the credentials.
        """
        logger = ctx.logger
        ws_logger = _RedactingLogger(logger.getChild("websockets"), self._redact)
        delays: Iterator[float] = backoff_delays(ctx.reconnect)
        attempts = 0
        last_error: KiteConnectionError | None = None
        wake = self._wake = anyio.Event()
        try:
            while not self._closing:
                delivered = False
                try:
                    ws = await self._open(ws_logger)
                    if ws is None:
                        return  # close() cut the opening handshake short
                    # Closed normally (1000) however the generator ends: `async with ws`
                    # would close with 1011 (internal error) when the pipeline closes the
                    # generator at a yield (a stop), which is no error.
                    try:
                        if self._closing:
                            return  # close() came as the connection opened; leaving closes it
                        self._ws = ws
                        self.connections += 1
                        logger.info(
                            "kite: connected to %s; subscribing %d instruments in %s mode",
                            self.params.url,
                            len(self.params.instruments),
                            self.params.mode,
                        )
                        for request in self.subscription_messages():
                            await ws.send(request)
                        async for message in ws:
                            ticks = await self._handle(message, ctx)
                            if ticks and not delivered:
                                delivered = True
                                # Only market data starts a fresh backoff series: a server
                                # that sends a heartbeat or an error and hangs up must still
                                # exhaust it.
                                delays = backoff_delays(ctx.reconnect)
                                attempts = 0
                                ctx.reconnecting.pop(_RECONNECTING, None)
                            for tick in ticks:
                                yield tick
                    finally:
                        await ws.close()
                    last_error = KiteConnectionError("the server closed the connection")
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in _AUTH_STATUSES:
                        raise KiteAuthenticationError(
                            f"kite: the server refused the connection with HTTP {status}; "
                            "check api_key and access_token (access tokens expire every day)"
                        ) from None
                    last_error = KiteConnectionError(self._redact(str(exc)))
                except (OSError, TimeoutError, WebSocketException) as exc:
                    last_error = KiteConnectionError(
                        self._redact(f"{type(exc).__name__}: {exc}")
                        if str(exc)
                        else type(exc).__name__
                    )
                finally:
                    self._ws = None
                if self._closing:
                    return
                delay = next(delays, None)
                if delay is None:
                    logger.error(
                        "kite: giving up after %d reconnection attempts: %s", attempts, last_error
                    )
                    raise ReconnectExhausted("kite feed", attempts, last_error) from None
                attempts += 1
                if attempts == 1:
                    since = datetime.now(UTC).isoformat(timespec="seconds")
                    ctx.reconnecting[_RECONNECTING] = f"connection lost since {since}: {last_error}"
                logger.warning(
                    "kite: connection lost (%s); reconnection attempt %d in %.2f s",
                    last_error,
                    attempts,
                    delay,
                )
                with anyio.move_on_after(delay):
                    await wake.wait()  # close() ends the wait early
        finally:
            # However the feed ends (closed, given up, failed, cancelled, generator closed), it
            # is no longer reconnecting; after giving up, the runtime says so instead.
            ctx.reconnecting.pop(_RECONNECTING, None)

    async def _open(self, logger: _RedactingLogger) -> ClientConnection | None:
        """Open a connection, or return ``None`` when :meth:`close` cuts the handshake short."""
        scope = self._handshake = anyio.CancelScope()
        try:
            with scope:
                return await connect(
                    self._connect_url(),
                    open_timeout=self.params.open_timeout_seconds,
                    logger=logger,
                )
            return None  # cancelled by close(); websockets has aborted the socket
        finally:
            self._handshake = None

    async def close(self) -> None:
        """Stop the feed: close the connection and do not reconnect.

        Takes effect at once in any state: an established connection is closed gracefully (with
        a close frame), an opening handshake in progress is abandoned (its socket is aborted,
        without waiting for the server's answer or ``open_timeout_seconds``), and a wait before
        a reconnection ends.
        """
        self._closing = True
        if self._handshake is not None:
            self._handshake.cancel()
        if self._wake is not None:
            self._wake.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    # ----------------------------------------------------------------------------------------
    # Messages

    async def _handle(self, message: str | bytes, ctx: FeedContext) -> list[MarketTick]:
        if isinstance(message, str):
            await self._handle_text(message, ctx)
            return []
        parsed = parse_message(message)
        if parsed.heartbeat:
            return []
        ticks: list[MarketTick] = []
        for error in parsed.errors:
            await self._bad_packet(ctx, message, error)
        for packet in parsed.packets:
            symbol = self.params.instruments.get(packet.instrument_token)
            where = f"packet {packet.index}"
            if symbol is None:
                self.unknown_instruments += 1
                await _report(
                    ctx,
                    DeadLetter(
                        source=SOURCE,
                        reason=(
                            f"instrument token {packet.instrument_token} is not in the "
                            "instruments mapping"
                        ),
                        error_type="unknown_instrument",
                        raw=message,
                        ts=ctx.clock.now(),
                        location=where,
                    ),
                )
                continue
            try:
                ticks.append(self._tick(packet, symbol, ctx))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                    for err in exc.errors(include_input=False)
                )
                await self._bad_packet(
                    ctx,
                    message,
                    PacketError(
                        where,
                        f"invalid tick for {symbol} (token {packet.instrument_token}): {problems}",
                    ),
                )
        return ticks

    def _tick(self, packet: KitePacket, symbol: str, ctx: FeedContext) -> MarketTick:
        ts = packet.exchange_timestamp if packet.mode is PacketMode.FULL else None
        return MarketTick(
            event_id=ctx.ids.new_id(),
            ts=ts or ctx.clock.now(),
            instrument=symbol,
            last_price=packet.last_price,
            last_quantity=Decimal(packet.last_quantity) if packet.last_quantity else None,
            volume=Decimal(packet.volume) if packet.volume is not None else None,
            bid=packet.best_bid,
            ask=packet.best_ask,
        )

    async def _bad_packet(self, ctx: FeedContext, raw: bytes, error: PacketError) -> None:
        self.bad_packets += 1
        ctx.logger.warning("kite: bad packet at %s: %s", error.location, error.reason)
        await _report(
            ctx,
            DeadLetter(
                source=SOURCE,
                reason=error.reason,
                error_type="bad_packet",
                raw=raw,
                ts=ctx.clock.now(),
                location=error.location,
            ),
        )

    async def _handle_text(self, text: str, ctx: FeedContext) -> None:
        """Text messages are JSON: order updates, errors and broker messages."""
        try:
            data = json.loads(text)
            kind = data.get("type") if isinstance(data, dict) else None
        except ValueError as exc:
            self.bad_packets += 1
            await _report(
                ctx,
                DeadLetter(
                    source=SOURCE,
                    reason=f"text message is not JSON: {exc}",
                    error_type="bad_message",
                    raw=text.encode("utf-8", "replace"),
                    ts=ctx.clock.now(),
                    location="message",
                ),
            )
            return
        payload = self._redact(str(data.get("data"))) if isinstance(data, dict) else ""
        if kind == "error":
            ctx.logger.warning("kite: server error: %s", payload)
        elif kind == "message":
            ctx.logger.info("kite: server message: %s", payload)
        else:
            # Order updates are not market data; an executor plugin would consume them.
            ctx.logger.debug("kite: ignored %s text message", kind or "untyped")


async def _report(ctx: FeedContext, letter: DeadLetter) -> None:
    result = ctx.report_bad_input(letter)
    if inspect.isawaitable(result):
        await result


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logger handed to websockets: its handshake debug lines contain the request path, whose
    query string carries the access token."""

    def __init__(self, logger: logging.Logger, redact: Any) -> None:
        super().__init__(logger, {})
        self._redact_text = redact

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            if exc_info is True:
                formatted = traceback.format_exc()
            elif isinstance(exc_info, BaseException):
                formatted = "".join(traceback.format_exception(exc_info))
            else:
                formatted = "".join(traceback.format_exception(*exc_info))
            text = f"{text}\n{formatted.rstrip()}"
        kwargs.pop("stack_info", None)
        kwargs.pop("extra", None)
        self.logger.log(level, self._redact_text(text), **kwargs)
