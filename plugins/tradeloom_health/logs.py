"""Structured logging: one JSON object per line.

Each line has ``ts``, ``level``, ``logger`` and ``message``; a line logged about an event also
has ``event_id`` and ``instrument``. Pass the event with ``extra={"event": event}`` (or give
``event_id`` / ``instrument`` explicitly in ``extra``); an event among the message's arguments
is found too. Other ``extra`` fields are included as they are. Secrets (pydantic ``SecretStr``
and ``SecretBytes``, also inside models) are written masked, never in clear.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any
from uuid import UUID

from pydantic import BaseModel, SecretBytes, SecretStr

from tradeloom.events import Event

MASK = "**********"
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def event_fields(event: Any) -> dict[str, Any]:
    """``event_id``, ``instrument`` and ``event_type`` of an event, for ``extra=``."""
    fields: dict[str, Any] = {}
    event_id = getattr(event, "event_id", None)
    if event_id is not None:
        fields["event_id"] = str(event_id)
    instrument = getattr(event, "instrument", None)
    if instrument is None:
        # A rejection carries its instrument inside the refused signal.
        instrument = getattr(getattr(event, "signal", None), "instrument", None)
    if instrument is not None:
        fields["instrument"] = str(instrument)
    event_type = getattr(event, "type", None)
    if isinstance(event_type, str):
        fields["event_type"] = event_type
    return fields


def jsonable(value: Any) -> Any:
    """A JSON-friendly form of ``value``: Decimals, UUIDs and datetimes as strings, models
    dumped with secrets masked, anything unknown as its ``repr``."""
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, Decimal | UUID | PurePath):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, BaseModel):
        try:
            return value.model_dump(mode="json")  # pydantic masks SecretStr in JSON mode
        except Exception:
            return repr(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return {field.name: jsonable(getattr(value, field.name)) for field in fields}
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return repr(value)


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON (see the module documentation)."""

    writes_json = True  # the command line then says its own lines as records too

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as exc:
            message = f"{record.msg!r} (arguments could not be formatted: {exc})"
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        }
        event = extras.pop("event", None)
        if event is None:
            event = _event_in_args(record.args)
        if event is not None:
            payload.update(event_fields(event))
        for key, value in extras.items():
            payload[key] = jsonable(value)
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(payload, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            return json.dumps({key: repr(value) for key, value in payload.items()})


def _event_in_args(args: Any) -> Event | None:
    if isinstance(args, tuple):
        for arg in args:
            if isinstance(arg, Event):
                return arg
    elif isinstance(args, Mapping):
        for arg in args.values():
            if isinstance(arg, Event):
                return arg
    return None


def install_json_logging(stream: IO[str] | None = None) -> logging.Handler:
    """Make the root logger write JSON lines.

    The console handlers ``logging.basicConfig`` sets up (plain ``StreamHandler``) get the JSON
    formatter; when there is none, a handler writing to ``stream`` (default: standard error) is
    added. Handlers of other kinds (files, test capture) are left as they are. Returns the
    first handler now writing JSON.
    """
    root = logging.getLogger()
    formatter = JsonFormatter()
    changed = [
        handler
        for handler in root.handlers
        if type(handler) is logging.StreamHandler and (stream is None or handler.stream is stream)
    ]
    for handler in changed:
        handler.setFormatter(formatter)
    if changed:
        return changed[0]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return handler
