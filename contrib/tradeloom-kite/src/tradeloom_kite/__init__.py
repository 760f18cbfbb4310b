"""tradeloom feed plugin for the Zerodha Kite Connect WebSocket ticker."""

from __future__ import annotations

from tradeloom_kite.feed import (
    KiteAuthenticationError,
    KiteConnectionError,
    KiteFeed,
    KiteFeedParams,
)
from tradeloom_kite.packets import KitePacket, PacketError, ParsedMessage, parse_message

__all__ = [
    "KiteAuthenticationError",
    "KiteConnectionError",
    "KiteFeed",
    "KiteFeedParams",
    "KitePacket",
    "PacketError",
    "ParsedMessage",
    "parse_message",
]
