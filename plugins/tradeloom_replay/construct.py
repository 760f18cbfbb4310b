"""Building events from rows the replay feed has already checked, without validating twice.

The feed checks every constraint the event models enforce (finite positive prices, non-negative
volumes, UTC timestamps, bar shape) while it parses a row, so running pydantic's validation
again would only cost time: replaying a million ticks is the common case. ``model_construct``
is not the answer either, as it is slower than validation for these small models. A row
builder fills the instance the way ``model_construct`` does, from a row tuple, in code
generated for the model's fields.

It touches pydantic's instance slots, so each builder first proves itself on a sample against
the validated constructor, and validates every event if the two ever disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast
from uuid import UUID

from tradeloom.events import Bar, Event, MarketTick
from tradeloom.runtime.trusted import MODEL_SLOT_SETTERS, builds_the_same
from tradeloom_replay.rows import BAR_ROW_FIELDS, TICK_ROW_FIELDS

E = TypeVar("E", bound=Event)
RowBuilder = Callable[[UUID, tuple[Any, ...]], E]

_SAMPLE_ID = UUID("01900000-0000-7000-8000-000000000000")
_SAMPLE_START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
_SAMPLE_END = _SAMPLE_START + timedelta(minutes=1)
#: A valid value for every field of a tick or bar row, to prove a builder with.
_SAMPLE_VALUES: dict[str, Any] = {
    "instrument": "SAMPLE",
    "last_price": Decimal("10.5"),
    "bid": Decimal("10.4"),
    "ask": Decimal("10.6"),
    "last_quantity": Decimal(2),
    "open": Decimal(10),
    "high": Decimal(11),
    "low": Decimal(9),
    "close": Decimal("10.5"),
    "volume": Decimal(0),
    "start": _SAMPLE_START,
    "end": _SAMPLE_END,
}


def _direct_builder(
    cls: type[E], row_fields: Sequence[str], fields_set: frozenset[str]
) -> RowBuilder[E]:
    # A copy of a template of the instance dict, in the model's field order (model_dump
    # keeps that order), with the given fields set: a row leaves the others None, which is
    # what the template holds for them (their defaults).
    template = {name: info.default for name, info in cls.model_fields.items()}
    if any(template[name] is not None for name in row_fields if name not in fields_set):
        raise ValueError("a field a row leaves out must default to None")
    assignments = "".join(
        f"    data[{name!r}] = row[{index}]\n"
        for index, name in enumerate(row_fields)
        if name in fields_set
    )
    source = (
        "def build(event_id, row):\n"
        "    data = template.copy()\n"
        "    data['event_id'] = event_id\n"
        f"{assignments}"
        "    event = new(cls)\n"
        "    set_dict(event, data)\n"
        "    set_fields(event, set(fields_set))\n"
        "    set_extra(event, None)\n"
        "    set_private(event, None)\n"
        "    return event\n"
    )
    namespace: dict[str, Any] = {
        "new": cls.__new__,
        "cls": cls,
        "template": template,
        "fields_set": fields_set,
        **MODEL_SLOT_SETTERS,
    }
    exec(compile(source, f"<row builder of {cls.__name__}>", "exec"), namespace)
    return cast(RowBuilder[E], namespace["build"])


def row_builder(cls: type[E], row_fields: Sequence[str], fields: frozenset[str]) -> RowBuilder[E]:
    """Return ``build(event_id, row)`` making a ``cls`` from a checked row: a tuple of the
    values of ``row_fields``, in that order (``ts`` first). ``fields`` are the row's fields
    the file gives: with ``event_id``, ``ts`` and ``instrument`` they are the event's
    ``model_fields_set``; the others are None in the row and take their defaults.

    Proven once against validated construction; validates every event if the two disagree.
    """
    fields_set = frozenset(fields | {"event_id", "ts", "instrument"})

    def validate(event_id: UUID, row: tuple[Any, ...]) -> E:
        values = dict(zip(row_fields, row, strict=True))
        return cls(event_id=event_id, **{k: v for k, v in values.items() if k in fields_set})

    try:
        build = _direct_builder(cls, row_fields, fields_set)
    except ValueError:
        return validate
    sample = tuple(
        (_SAMPLE_END if name == "ts" else _SAMPLE_VALUES[name]) if name in fields_set else None
        for name in row_fields
    )
    if builds_the_same(lambda: build(_SAMPLE_ID, sample), lambda: validate(_SAMPLE_ID, sample)):
        return build
    return validate


def tick_builder(fields: frozenset[str]) -> RowBuilder[MarketTick]:
    """A :func:`row_builder` of ticks from rows of ``TICK_ROW_FIELDS``."""
    return row_builder(MarketTick, TICK_ROW_FIELDS, fields)


def bar_builder() -> RowBuilder[Bar]:
    """A :func:`row_builder` of bars from rows of ``BAR_ROW_FIELDS`` (every field given)."""
    return row_builder(Bar, BAR_ROW_FIELDS, frozenset(BAR_ROW_FIELDS))
