"""Handing blocks of market events to the stages of one process, in one generated loop.

On the in-process transport the pipeline calls each stage's market method itself (see
``Pipeline.direct_route``). A loop over the stages' methods inside the loop over the events
costs more than the calls written out one after the other, so the loop is generated for the
route, as attrs and dataclasses generate their methods: the same calls, in the same order,
each with the error handling the stage's handler would give it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradeloom.errors import TradeloomError
from tradeloom.events import Bar, MarketEvent, MarketTick
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.status import PipelineStatus

if TYPE_CHECKING:
    from tradeloom.components import PricedMarketMethod
    from tradeloom.runtime.stages import Stage

BlockDelivery = Callable[[Iterable[MarketEvent]], int]

# The fields are read from the instance dict, where pydantic keeps them: a read of a model's
# attribute goes through the generic lookup (pydantic's __getattr__ makes CPython 3.11 give up
# specialising it) and costs about as much as the dict itself. The price is what the
# ``price`` property of the event's type gives, read as that property reads it; a subclass's
# own ``price`` is called.
_READ_PRICE = (
    "kind = type(event)\n"
    "            if kind is MarketTick:\n"
    "                price = fields['last_price']\n"
    "            elif kind is Bar:\n"
    "                price = fields['close']\n"
    "            else:\n"
    "                price = event.price"
)


def block_delivery(
    targets: Sequence[tuple[Stage, Callable[[Any], None]]],
    clock: Any,
    status: PipelineStatus,
    out_of_order: Callable[[MarketEvent, datetime], Exception] | None = None,
) -> BlockDelivery:
    """Return ``deliver(events) -> count``: for each event, move ``clock`` to its time,
    record it in ``status.last_market_time`` (and the block's last event in
    ``status.last_market_event``) and call each target's method with it, in order.
    A method that raises anything but a :class:`~tradeloom.errors.TradeloomError` is reported
    as its stage's failure (``Stage.failed``). ``status.market_events`` and each stage's
    ``events_in`` grow by the count, also after an error (then counting the event that failed,
    whose time is the latest recorded). With ``out_of_order`` and a simulated clock, an event
    earlier than the clock is not delivered: ``out_of_order(event, now)`` is raised."""
    namespace: dict[str, Any] = {
        "MarketTick": MarketTick,
        "Bar": Bar,
        "TradeloomError": TradeloomError,
        "clock": clock,
        "advance": clock.advance,
        "last_times": status.last_market_time,
        "status": status,
        "out_of_order": out_of_order,
    }
    calls = []
    priced = False
    for index, (stage, method) in enumerate(targets):
        namespace[f"stage_{index}"] = stage
        # The price, time and instrument are read once for the stages whose market method
        # can take them.
        priced_method = _priced_method(method)
        namespace[f"method_{index}"] = priced_method or method
        priced = priced or priced_method is not None
        arguments = "event, price, ts, instrument" if priced_method is not None else "event"
        calls.append(
            "            try:\n"
            f"                method_{index}({arguments})\n"
            "            except TradeloomError:\n"
            "                raise\n"
            "            except Exception as exc:\n"
            f"                raise stage_{index}.failed(event, exc) from exc\n"
        )
    # A simulated clock is moved here rather than through a call per event.
    move = "advance(ts)"
    if type(clock) is SimulatedClock:
        move = "if ts > clock._now:\n                clock._now = ts"
        if out_of_order is not None:
            move += (
                "\n            elif ts < clock._now:"
                "\n                raise out_of_order(event, clock._now)"
            )
    counted = (
        "        if count:\n"
        "            status.last_market_event = event\n"
        "        status.market_events += count\n"
    ) + "".join(
        f"        stage_{index}.counters.events_in += count\n" for index in range(len(targets))
    )
    source = (
        "def deliver(events):\n"
        "    count = 0\n"
        "    try:\n"
        "        for event in events:\n"
        "            fields = event.__dict__\n"
        "            ts = fields['ts']\n"
        f"            {_READ_PRICE if priced else 'pass'}\n"
        f"            {move}\n"
        "            instrument = fields['instrument']\n"
        "            last_times[instrument] = ts\n"
        "            count += 1\n"
        f"{''.join(calls)}"
        "    finally:\n"
        f"{counted}"
        "    return count\n"
    )
    exec(compile(source, "<market delivery>", "exec"), namespace)
    deliver: BlockDelivery = namespace["deliver"]
    return deliver


def _priced_method(method: Callable[[Any], None]) -> PricedMarketMethod | None:
    """What stands for the route's market ``method`` taking the price, time and instrument as
    well: the ``priced_market_method()`` of the stage or executor ``method`` is bound to, when
    ``method`` is the very ``on_market`` it stands for (that of the class that defines
    ``priced_market_method``: not one overridden in a subclass, nor replaced on the instance,
    which are called as they are); None: call ``method``."""
    owner = getattr(method, "__self__", None)
    if owner is None:
        return None
    cls = next((c for c in type(owner).__mro__ if "priced_market_method" in vars(c)), None)
    if cls is None or getattr(method, "__func__", None) is not vars(cls).get("on_market"):
        return None
    priced: PricedMarketMethod | None = owner.priced_market_method()
    return priced
