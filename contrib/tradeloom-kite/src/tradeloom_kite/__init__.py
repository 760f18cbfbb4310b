"""tradeloom feed plugin for the Zerodha Kite Connect WebSocket ticker.

The names below are imported when first used, so loading the plugin (which every tradeloom
process does) does not import the feed and its WebSocket client.
"""

from tradeloom.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "KiteAuthenticationError": "tradeloom_kite.feed",
        "KiteConnectionError": "tradeloom_kite.feed",
        "KiteFeed": "tradeloom_kite.feed",
        "KiteFeedParams": "tradeloom_kite.feed",
        "KitePacket": "tradeloom_kite.packets",
        "PacketError": "tradeloom_kite.packets",
        "ParsedMessage": "tradeloom_kite.packets",
        "parse_message": "tradeloom_kite.packets",
    },
)
