"""An example feed: ticks from a JSON-lines file. Replace the reading with your source.

Each line is one tick::

    {"ts": "2024-03-04T14:30:00Z", "instrument": "ACME", "price": "250.00", "quantity": "3"}

A live feed looks the same except that ``events`` is an ``async def`` generator that reads
from a connection and reconnects with ``ctx.reconnect`` (see docs: writing a feed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tradeloom import MarketTick
from tradeloom.components import DeadLetter, Feed, FeedContext


class {{ cookiecutter.class_name }}(Feed):
    """Replays a JSON-lines file of ticks, in file order.

    A line that is not a valid tick (bad JSON, a missing field, a price that is not a positive
    number) is reported to ``ctx.report_bad_input`` with its line number and skipped: a feed
    never stops on bad data. ``instrument`` overrides the instrument of every line.
    """

    def __init__(self, path: str, instrument: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{{ cookiecutter.component_name }} feed: file not found: {self.path}")
        self.instrument = instrument
        self._running: list[Iterator[MarketTick]] = []

    def events(self, ctx: FeedContext) -> Iterator[MarketTick]:
        replay = self._read(ctx)
        self._running.append(replay)
        return replay

    def close(self) -> None:
        running, self._running = self._running, []
        for replay in running:
            replay.close()  # type: ignore[attr-defined]

    def _read(self, ctx: FeedContext) -> Iterator[MarketTick]:
        with self.path.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                try:
                    tick = self._tick(json.loads(raw), ctx)
                except (ValueError, TypeError, KeyError, ValidationError) as exc:
                    ctx.report_bad_input(
                        DeadLetter(
                            source=str(self.path),
                            reason=_reason(exc),
                            error_type=type(exc).__name__,
                            raw=raw.rstrip(b"\r\n"),
                            ts=ctx.clock.now(),
                            location=f"line {number}",
                        )
                    )
                    continue
                yield tick

    def _tick(self, record: Any, ctx: FeedContext) -> MarketTick:
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        return MarketTick(
            event_id=ctx.ids.new_id(),  # ids always come from the configured generator
            ts=datetime.fromisoformat(record["ts"]),
            instrument=self.instrument or record["instrument"],
            last_price=record["price"],  # a string: Decimal, exact; a JSON float is refused
            last_quantity=record.get("quantity"),
        )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc)
