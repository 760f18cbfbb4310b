"""Building events from values that are already valid, without validating them a second time.

pydantic validates every event built from outside data: a decoded message, a feed's row, a
strategy's order. Inside the pipeline many events are made from events that were validated
already: an order copies its signal, a fill copies its order and takes a price from a market
event. Validating those again costs a few microseconds each (the money fields run Python
validators), which is most of an order's life cycle on the in-process transport.

:func:`trusted_builder` returns a function that builds such an event the way
``model_construct`` does (which is itself slower than validation for these small models): it
sets the instance's dict directly. The builder only trusts what its caller
guarantees; it still checks the two values that come from pluggable components, the id
(a :class:`~uuid.UUID` from the id generator) and the time (a UTC datetime from the clock),
and validates the normal way when they are anything else. It touches pydantic's instance
slots, so it proves itself once, on a sample, against validated construction, and validates
always if the two ever disagree (a future pydantic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from tradeloom.events import Event, Fill, Order, OrderType, Side, Signal

E = TypeVar("E", bound=Event)

#: Setters of a pydantic model instance's four slots, for generated builders: ``set_dict``,
#: ``set_fields``, ``set_extra`` and ``set_private``. The slots' own descriptors cost about
#: half of ``object.__setattr__`` on a model, which looks them up on every call.
MODEL_SLOT_SETTERS: dict[str, Callable[[Any, Any], None]] = {
    f"set_{short}": BaseModel.__dict__[slot].__set__
    for short, slot in (
        ("dict", "__dict__"),
        ("fields", "__pydantic_fields_set__"),
        ("extra", "__pydantic_extra__"),
        ("private", "__pydantic_private__"),
    )
}


def _plain(values: Mapping[str, Any]) -> bool:
    ts = values["ts"]
    return type(values["event_id"]) is UUID and type(ts) is datetime and ts.tzinfo is UTC


def _agrees(cls: type[E], build: Callable[..., E], sample: Mapping[str, Any]) -> bool:
    if not _plain(sample):
        return False  # the sample would not take the fast path, so it proves nothing
    return builds_the_same(lambda: build(**sample), lambda: cls(**sample))


def builds_the_same(build: Callable[[], Event], validate: Callable[[], Event]) -> bool:
    """Whether a fast builder's event is the validated one in every way that shows: equal,
    same fields set, same JSON, same hash. False if either raises."""
    try:
        built, checked = build(), validate()
        return (
            built == checked
            and built.model_fields_set == checked.model_fields_set
            and built.model_dump_json() == checked.model_dump_json()
            and hash(built) == hash(checked)
        )
    except Exception:
        return False


def trusted_builder(cls: type[E], sample: Mapping[str, Any]) -> Callable[..., E]:
    """Return ``build(**values)`` making a ``cls`` from keyword values the caller guarantees
    valid, except ``event_id`` and ``ts``, which are checked (a UUID; a datetime in UTC).

    The builder takes exactly the fields ``sample`` has, as keyword arguments; the others get
    their defaults. ``sample`` is one valid set of values: at import, the fast path must give
    the same event as ``cls(**sample)``, or every call validates.
    """
    given = [name for name in cls.model_fields if name in sample]
    if "event_id" not in given or "ts" not in given:
        return cls
    namespace: dict[str, Any] = {
        "cls": cls,
        "new": cls.__new__,
        **MODEL_SLOT_SETTERS,
        "UUID": UUID,
        "datetime": datetime,
        "UTC": UTC,
        "given": set(given),
    }
    items = []
    for index, (name, info) in enumerate(cls.model_fields.items()):
        if name in sample:
            items.append(f"{name!r}: {name}")
        elif info.is_required() or info.default_factory is not None:
            return cls
        else:
            namespace[f"default_{index}"] = info.default
            items.append(f"{name!r}: default_{index}")
    # Generated, as dataclasses and attrs do, so a call binds its keywords straight to locals
    # and builds the instance dict in one expression.
    source = (
        f"def build(*, {', '.join(given)}):\n"
        "    if type(event_id) is not UUID or type(ts) is not datetime or ts.tzinfo is not UTC:\n"
        f"        return cls({', '.join(f'{name}={name}' for name in given)})\n"
        "    event = new(cls)\n"
        f"    set_dict(event, {{{', '.join(items)}}})\n"
        "    set_fields(event, given.copy())\n"
        "    set_extra(event, None)\n"
        "    set_private(event, None)\n"
        "    return event\n"
    )
    exec(compile(source, f"<trusted builder of {cls.__name__}>", "exec"), namespace)
    build: Callable[..., E] = namespace["build"]
    return build if _agrees(cls, build, sample) else cls


_ID = UUID("01900000-0000-7000-8000-000000000000")
_TS = datetime(2024, 1, 2, tzinfo=UTC)
_ORDER_SAMPLE: dict[str, Any] = {
    "event_id": _ID,
    "ts": _TS,
    "strategy_id": "sample",
    "instrument": "SAMPLE",
    "side": Side.BUY,
    "quantity": Decimal("1.5"),
    "order_type": OrderType.LIMIT,
    "limit_price": Decimal("10.25"),
    "market_ts": _TS,
}

build_signal: Callable[..., Signal] = trusted_builder(Signal, _ORDER_SAMPLE)
"""A :class:`~tradeloom.events.Signal` from checked values (see ``StrategyContext``)."""
build_order: Callable[..., Order] = trusted_builder(Order, {**_ORDER_SAMPLE, "signal_id": _ID})
"""An :class:`~tradeloom.events.Order` copying a validated signal."""
build_fill: Callable[..., Fill] = trusted_builder(
    Fill,
    {
        "event_id": _ID,
        "ts": _TS,
        "order_id": _ID,
        "signal_id": _ID,
        "strategy_id": "sample",
        "instrument": "SAMPLE",
        "side": Side.SELL,
        "quantity": Decimal("1.5"),
        "price": Decimal("10.25"),
        "commission": Decimal("0.01"),
    },
)
"""A :class:`~tradeloom.events.Fill` of a validated order at a validated, positive price."""
