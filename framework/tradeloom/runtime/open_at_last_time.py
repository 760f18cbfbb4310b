"""What a backtest's stored state says of the orders still open at its last time.

A backtest that ends (its data ended, or a stop between two times) stores its state stamped
with its last time. Orders the strategies made at that time may have had their outcome then
(``fill_at = "last"``, a validator's refusal) or not (``fill_at = "next"``: the run ended
before the next price). The fills journal cannot tell them apart: a fill stamped with that time
may be the outcome of an order made on the time before. So the run keeps, with the state, the
signals made at its last time that had no outcome when the input ended (before ``on_stop`` and
the rejections of what was left waiting), in the persistence's metadata.

A run resumed from that state sends exactly those again when it goes on (see
:class:`tradeloom.runtime.resume.WarmUp`): the signal its strategy makes again while warming
up, where it makes the same order, otherwise one made from the record. A state without a
record for its last time (written by an older tradeloom, by a back end that keeps no metadata,
or by a run that failed or was killed) is resumed the way those were: see ``WarmUp``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tradeloom.events import OrderType, Side, Signal

if TYPE_CHECKING:
    from tradeloom.strategy import StrategyContext

OPEN_ORDERS_KEY = "open_at_last_time"
"""The metadata key of the record (see ``Persistence.save_metadata``)."""

_VERSION = 1

OrderKey = tuple[str, Side, Decimal, OrderType, Decimal | None]


def order_key(signal: Signal) -> OrderKey:
    """What a signal asks for: two signals with the same key are the same order (their
    Decimals compared by value)."""
    return (signal.instrument, signal.side, signal.quantity, signal.order_type, signal.limit_price)


def record_open_orders(time: datetime, contexts: Iterable[StrategyContext]) -> str:
    """The record of the signals made at ``time`` that are still open, as kept in metadata."""
    open_signals = [
        signal.model_dump(mode="json") for ctx in contexts for signal in ctx._open_sent_at(time)
    ]
    return json.dumps({"version": _VERSION, "time": time.isoformat(), "open": open_signals})


def read_open_orders(
    metadata: Mapping[str, str], after: datetime
) -> dict[str, list[Signal]] | None:
    """The open signals of the record in ``metadata``, by strategy id, when it is the record of
    the stored state's last time ``after``; ``None`` when there is no such record (none kept,
    one of an earlier time, or one this version cannot read)."""
    text = metadata.get(OPEN_ORDERS_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        document: Any = json.loads(text)
        if (
            not isinstance(document, dict)
            or document.get("version") != _VERSION
            or not isinstance(document.get("open"), list)
            or datetime.fromisoformat(document["time"]) != after
        ):
            return None
        signals = [Signal.model_validate(item) for item in document["open"]]
    except (ValueError, TypeError, KeyError, ValidationError):
        return None
    if any(signal.ts != after for signal in signals):
        return None
    by_strategy: dict[str, list[Signal]] = {}
    for signal in signals:
        by_strategy.setdefault(signal.strategy_id, []).append(signal)
    return by_strategy
