"""Building events from values the replay feed has already checked, without validating twice.

The feed checks every constraint the event models enforce (finite positive prices, non-negative
volumes, UTC timestamps, bar shape) while it parses a row, so running pydantic's validation
again would only cost time: replaying a million ticks is the common case. ``model_construct``
is not the answer either, as it is slower than validation for these small models. The builder
below fills the instance the way ``model_construct`` does, from a template of defaults.

It touches pydantic's instance slots, so it checks itself once, at import, against the
validated constructor and falls back to ``model_construct`` if the two ever disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast
from uuid import UUID

from tradeloom.events import Bar, Event, MarketTick
from tradeloom.runtime.trusted import MODEL_SLOT_SETTERS, builds_the_same
from tradeloom_replay.rows import TICK_ROW_FIELDS, TickRow

E = TypeVar("E", bound=Event)
Builder = Callable[[dict[str, Any]], E]

set_dict, set_fields, set_extra, set_private = MODEL_SLOT_SETTERS.values()


def _direct_builder(cls: type[E]) -> Builder[E] | None:
    template: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            return None
        template[name] = None if info.is_required() else info.default
    new = cls.__new__

    def build(values: dict[str, Any]) -> E:
        data = template.copy()
        data.update(values)
        event = new(cls)
        set_dict(event, data)
        set_fields(event, set(values))
        set_extra(event, None)
        set_private(event, None)
        return event

    return build


def _agrees(cls: type[E], build: Builder[E], sample: dict[str, Any]) -> bool:
    return builds_the_same(lambda: build(dict(sample)), lambda: cls(**sample))


def checked_builder(cls: type[E], sample: dict[str, Any]) -> Builder[E]:
    """Return a function building ``cls`` from a dict of already-valid field values.

    ``sample`` is a valid set of values used to prove, once, that the fast path gives the same
    event as ``cls(**values)``.
    """
    build = _direct_builder(cls)
    if build is not None and _agrees(cls, build, sample):
        return build

    def construct(values: dict[str, Any]) -> E:
        return cast(E, cls.model_construct(**values))

    return construct


_SAMPLE_ID = UUID("01900000-0000-7000-8000-000000000000")
_SAMPLE_START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)

build_tick: Builder[MarketTick] = checked_builder(
    MarketTick,
    {
        "event_id": _SAMPLE_ID,
        "ts": _SAMPLE_START,
        "instrument": "SAMPLE",
        "last_price": Decimal("10.5"),
        "bid": Decimal("10.4"),
        "ask": Decimal("10.6"),
        "volume": Decimal("0"),
    },
)
build_bar: Builder[Bar] = checked_builder(
    Bar,
    {
        "event_id": _SAMPLE_ID,
        "ts": _SAMPLE_START + timedelta(minutes=1),
        "instrument": "SAMPLE",
        "open": Decimal("10"),
        "high": Decimal("11"),
        "low": Decimal("9"),
        "close": Decimal("10.5"),
        "volume": Decimal("100"),
        "start": _SAMPLE_START,
        "end": _SAMPLE_START + timedelta(minutes=1),
    },
)


TickBuilder = Callable[[UUID, TickRow], MarketTick]


def _direct_tick_builder(fields_set: frozenset[str]) -> TickBuilder:
    # The instance dict written out in the model's field order (model_dump keeps that order).
    given = {"event_id": "event_id", **{name: name for name in TICK_ROW_FIELDS}}
    items = []
    for name, _info in MarketTick.model_fields.items():
        if name in given:
            items.append(f"{name!r}: {name}")
        else:
            items.append(f"{name!r}: _default_{name}")
    source = (
        "def build(event_id, row):\n"
        f"    {', '.join(TICK_ROW_FIELDS)} = row\n"
        "    event = new(MarketTick)\n"
        f"    set_dict(event, {{{', '.join(items)}}})\n"
        "    set_fields(event, set(fields_set))\n"
        "    set_extra(event, None)\n"
        "    set_private(event, None)\n"
        "    return event\n"
    )
    namespace: dict[str, Any] = {
        "new": MarketTick.__new__,
        "MarketTick": MarketTick,
        "fields_set": fields_set,
        **MODEL_SLOT_SETTERS,
        **{
            f"_default_{name}": info.default
            for name, info in MarketTick.model_fields.items()
            if name not in given
        },
    }
    exec(source, namespace)
    return cast(TickBuilder, namespace["build"])


def tick_builder(fields: frozenset[str]) -> TickBuilder:
    """Return ``build(event_id, row)`` making a :class:`MarketTick` from a checked tick row
    (``TICK_ROW_FIELDS``); ``fields`` are the row's fields the file has (its
    ``model_fields_set``, with ``event_id``). Proven against validated construction first;
    validates every tick if the two disagree."""
    fields_set = frozenset(fields | {"event_id", "ts", "instrument"})
    build = _direct_tick_builder(fields_set)
    full = (_SAMPLE_START, "SAMPLE", Decimal("10.5"), Decimal("10.4"), Decimal("10.6"))
    full += (Decimal(2), Decimal(0))
    sample = tuple(
        value if name in fields_set else None
        for name, value in zip(TICK_ROW_FIELDS, full, strict=True)
    )
    if _tick_agrees(build, fields_set, sample):  # type: ignore[arg-type]
        return build

    def validate(event_id: UUID, row: TickRow) -> MarketTick:
        values = dict(zip(TICK_ROW_FIELDS, row, strict=True))
        return MarketTick(event_id=event_id, **{k: v for k, v in values.items() if k in fields_set})

    return validate


def _tick_agrees(build: TickBuilder, fields_set: frozenset[str], row: TickRow) -> bool:
    values = dict(zip(TICK_ROW_FIELDS, row, strict=True))
    given = {k: v for k, v in values.items() if k in fields_set}
    return builds_the_same(
        lambda: build(_SAMPLE_ID, row), lambda: MarketTick(event_id=_SAMPLE_ID, **given)
    )
