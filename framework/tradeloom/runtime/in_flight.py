"""What a backtest keeps of the orders in flight when it stops, and how a resumed run places
them again.

A backtest stores its state stamped with its last time. Orders may be on their way then: at the
executor, waiting for their instrument's next price (``fill_at = "next"``) or resting (a limit
order), and signals at the risk stage, waiting for their instrument's first price. The state
(fills and snapshots) does not hold them: the run ends by rejecting them ("input ended"). So a
backtest that took its last time whole (its input ended, or it was stopped or interrupted at a
pause between two times) keeps them in the persistence's metadata, as they were, in order; so
does each periodic checkpoint taken at such a pause, for a run killed after it.

A run resumed from that state (see :class:`tradeloom.runtime.resume.WarmUp`) places them again
where they were: the orders straight at the executor (they passed the validators, on the prices
and books of their time, and are not judged again), the signals back at the risk stage; each
counts as open for its strategy again. Where the warm-up made the same order again at the same
time, the strategy's signal stands for it (the strategy holds that one, and may cancel it);
otherwise the recorded one, with its own id. A state without that record (an executor that
cannot tell what waits, a back end that keeps no metadata, a run that failed, an async feed's
run that was killed, an older tradeloom) is resumed the way those were: see ``WarmUp``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from pydantic import ValidationError

from tradeloom.events import Order, OrderType, Side, Signal

if TYPE_CHECKING:
    from tradeloom.strategy import StrategyContext

IN_FLIGHT_KEY = "in_flight_orders"
"""The metadata key of the record (see ``Persistence.save_metadata``)."""

_VERSION = 1

OrderKey = tuple[str, Side, Decimal, OrderType, Decimal | None]


def order_key(intent: Signal | Order) -> OrderKey:
    """What a signal or an order asks for: the same key is the same order (Decimals compared
    by value)."""
    return (intent.instrument, intent.side, intent.quantity, intent.order_type, intent.limit_price)


@attrs.frozen
class InFlight:
    """The orders waiting at the executor and the signals waiting at the risk stage when a
    backtest stopped at ``time``."""

    time: datetime
    orders: Sequence[Order]
    signals: Sequence[Signal]


def record_in_flight(in_flight: InFlight) -> str:
    """The record kept in metadata."""
    return json.dumps(
        {
            "version": _VERSION,
            "time": in_flight.time.isoformat(),
            "orders": [order.model_dump(mode="json") for order in in_flight.orders],
            "signals": [signal.model_dump(mode="json") for signal in in_flight.signals],
        }
    )


def read_in_flight(metadata: Mapping[str, str], after: datetime) -> InFlight | None:
    """The record in ``metadata`` when it is that of the stored state's last time ``after``;
    ``None`` when there is no such record (none kept, one of an earlier time, or one this
    version cannot read)."""
    text = metadata.get(IN_FLIGHT_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        document: Any = json.loads(text)
        if (
            not isinstance(document, dict)
            or document.get("version") != _VERSION
            or not isinstance(document.get("orders"), list)
            or not isinstance(document.get("signals"), list)
            or datetime.fromisoformat(document["time"]) != after
        ):
            return None
        orders = [Order.model_validate(item) for item in document["orders"]]
        signals = [Signal.model_validate(item) for item in document["signals"]]
    except (ValueError, TypeError, KeyError, ValidationError):
        return None
    if any(intent.ts > after for intent in (*orders, *signals)):
        return None
    return InFlight(after, orders, signals)


@attrs.define
class CarriedOver:
    """What a resumed run places again: orders for the executor, each with the signal it
    stands for (the strategy's), and signals for the risk stage."""

    orders: list[tuple[Signal, Order]] = attrs.Factory(list)
    signals: list[Signal] = attrs.Factory(list)
    unknown: dict[str, int] = attrs.Factory(dict)
    """Orders and signals of strategies the run does not have, by strategy id: not placed."""


def carry_over(
    in_flight: InFlight,
    contexts: Mapping[str, StrategyContext],
    made_again: Mapping[str, list[Signal]],
) -> CarriedOver:
    """Match what was in flight with the signals each strategy made again at the last time
    while warming up (``made_again``, by strategy id; those matched are taken out of the
    lists), and count each as open for its strategy."""
    carried = CarriedOver()
    for order in in_flight.orders:
        ctx = contexts.get(order.strategy_id)
        if ctx is None:
            carried.unknown[order.strategy_id] = carried.unknown.get(order.strategy_id, 0) + 1
            continue
        signal = _claim(made_again.get(order.strategy_id, []), order.ts, order_key(order))
        if signal is None:
            signal = order.to_signal()
        else:
            order = order.model_copy(update={"signal_id": signal.event_id})
        ctx._open_orders.add(signal.instrument, signal)
        carried.orders.append((signal, order))
    for recorded in in_flight.signals:
        ctx = contexts.get(recorded.strategy_id)
        if ctx is None:
            unknown = carried.unknown
            unknown[recorded.strategy_id] = unknown.get(recorded.strategy_id, 0) + 1
            continue
        made = made_again.get(recorded.strategy_id, [])
        signal = _claim(made, recorded.ts, order_key(recorded)) or recorded
        ctx._open_orders.add(signal.instrument, signal)
        carried.signals.append(signal)
    return carried


def _claim(made: list[Signal], ts: datetime, key: OrderKey) -> Signal | None:
    for index, signal in enumerate(made):
        if signal.ts == ts and order_key(signal) == key:
            return made.pop(index)
    return None
