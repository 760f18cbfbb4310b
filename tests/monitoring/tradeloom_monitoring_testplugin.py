"""A feed and a strategy for the monitoring tests, registered as a plugin (``-p`` on the
command line, or ``plugins=[...]`` from code)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import anyio

from tradeloom import MarketTick, Strategy, hookimpl
from tradeloom.components import Feed, FeedContext
from tradeloom.strategy import StrategyContext


class TickFeed(Feed):
    """Live-style async feed: ``count`` ticks of ``instrument``, then (with ``hold``) waits
    until :attr:`release` is set, so a test can look at the running pipeline."""

    def __init__(self, count: int = 3, instrument: str = "ACME", hold: bool = False) -> None:
        self.count = count
        self.instrument = instrument
        self.hold = hold
        self.sent = anyio.Event()
        self.release = anyio.Event()

    async def _events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:
        for index in range(self.count):
            yield MarketTick(
                event_id=ctx.ids.new_id(),
                ts=ctx.clock.now(),
                instrument=self.instrument,
                last_price=Decimal("101.25") + index,
                last_quantity=Decimal("3"),
                volume=Decimal("1000.5"),
            )
            await anyio.sleep(0)
        self.sent.set()
        if self.hold:
            await self.release.wait()

    def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        return self._events(ctx)


class BuyOnce(Strategy):
    """Buys one lot on the first tick it sees, and logs about the tick it acted on."""

    def __init__(self, quantity: Decimal = Decimal("2")) -> None:
        self.quantity = quantity
        self.bought = False

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if not self.bought:
            self.bought = True
            ctx.logger.info("buying on %s", tick.instrument, extra={"event": tick})
            ctx.buy(tick.instrument, self.quantity)


@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    return {"test_ticks": TickFeed}


@hookimpl
def tradeloom_register_strategies() -> Mapping[str, Any]:
    return {"buy_once": BuyOnce}
