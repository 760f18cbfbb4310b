"""What a resumed run compares with the run that saved its state: the settings that shape the
books (strategies and their parameters, validators, the executor, the starting cash) and the
feed's.

Each setting is kept as a salted digest of its value under its path
(``strategies[sma_cross].params.fast``), not as the value itself. A digest hides only a value
that cannot be guessed (a small number is found by trying candidates), so parameters whose
names say they are secrets (a password, a token, an API key) are left out altogether, as is
anything of ``[persistence]``. Numbers are compared as numbers (``10``, ``"10"`` and ``"10.0"``
are one value; ``"007"`` is text). A resumed run with other settings carries on from the
stored books all the same (a live deployment may well change a parameter between two
restarts): it says which settings changed, so that a backtest whose results now mix two
configurations is not taken for one.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tradeloom.settings import Settings

METADATA_KEY = "tradeloom.settings"
"""The persistence metadata key the record is saved under."""

CLOCK_KEY = "tradeloom.clock"
"""The metadata key of the kind of clock that stamped the stored state: ``"simulated"`` (a
backtest's: the data's times) or ``"wall"`` (a live run's, or a backtest's on the wall clock),
kept with the settings record. A backtest cannot resume from wall-clock state: its latest time
is not one of the data's."""

_FEED = "feed"
_SECRET = re.compile(
    r"(^|[_\W])(pass(word|phrase|wd)?|secrets?|tokens?|credentials?|api_?key|private_?key|auth)"
    r"($|[_\W])",
    re.I,
)
"""Names of parameters left out of the record (a whole part of the name: ``api_key``,
``db_password``, not ``max_tokens_per_day``... which it is too), what a digest would not hide
well. Strategy and portfolio ids are never left out."""


def settings_paths(settings: Settings) -> dict[str, Any]:
    """Each setting that shapes the books, and the feed's, by its path: ``{path: value}``."""
    shaping: dict[str, Any] = {
        "strategies": {
            entry.strategy_id: entry.model_dump(exclude={"id"}) for entry in settings.strategies
        },
        "validators": [entry.model_dump() for entry in settings.validators],
        "executor": settings.executor.model_dump(),
        "portfolio": settings.portfolio.model_dump(
            include={"starting_cash", "starting_cash_by_portfolio"}
        ),
    }
    if settings.feed is not None:
        shaping[_FEED] = settings.feed.model_dump()
    leaves: dict[str, Any] = {}
    _flatten(shaping, "", leaves)
    return leaves


def _flatten(value: Any, path: str, leaves: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        # Keys of these tables are ids a user chose, not names of parameters.
        ids = path in ("strategies", "portfolio.starting_cash_by_portfolio")
        for key, item in value.items():
            if not ids and isinstance(key, str) and _SECRET.search(key):
                continue
            if not path:
                child = str(key)
            elif path == "strategies":
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}"
            _flatten(item, child, leaves)
    elif isinstance(value, list | tuple) and value:
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", leaves)
    else:
        leaves[path] = _comparable(value)


def _comparable(value: Any) -> Any:
    """``value`` as JSON can hold it and as it compares: a number (also one written as text,
    in the form Decimal writes it: ``"10"``, ``"0.10"``, not ``"007"``, which may be an
    account) as its normalized Decimal text, an object JSON cannot hold by its type's name."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal | str):
        try:
            number = Decimal(value if isinstance(value, str) else str(value))
        except InvalidOperation:
            return value
        if not number.is_finite() or (isinstance(value, str) and str(number) != value):
            return value
        return f"number {number.normalize()}"
    if isinstance(value, Mapping | list | tuple):
        return json.loads(json.dumps(value, default=_name_of))  # an empty one
    return _name_of(value)


def _name_of(value: Any) -> str:
    kind = type(value)
    return f"<{kind.__module__}.{kind.__qualname__}>"


def _digest(salt: str, path: str, value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_name_of)
    return hashlib.sha256(f"{salt}\0{path}\0{text}".encode()).hexdigest()[:32]


def settings_record(settings: Settings, salt: str | None = None) -> str:
    """The record of ``settings`` to save with the state: JSON of a salt and the digest of
    each setting by path."""
    salt = salt if salt is not None else secrets.token_hex(16)
    digests = {path: _digest(salt, path, value) for path, value in settings_paths(settings).items()}
    return json.dumps({"salt": salt, "digests": digests}, sort_keys=True)


def changed_settings(record: str, settings: Settings) -> tuple[list[str], list[str]] | None:
    """The paths of the settings that differ from ``record`` (one a run saved), added or
    removed ones too: ``(shaping the books, the feed's)``, sorted. None when the record cannot
    be read (saved by another version, or damaged): then nothing can be said."""
    try:
        stored = json.loads(record)
        salt, digests = stored["salt"], stored["digests"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(salt, str) or not isinstance(digests, dict):
        return None
    current = {path: _digest(salt, path, value) for path, value in settings_paths(settings).items()}
    differing = {
        path for path in current.keys() | digests.keys() if current.get(path) != digests.get(path)
    }
    # A table that was empty and is not (or the reverse) is named once, not with what is in it.
    changed = sorted(path for path in differing if not _below_any(path, differing))
    feed = [path for path in changed if path == _FEED or path.startswith(f"{_FEED}.")]
    return [path for path in changed if path not in feed], feed


def _below_any(path: str, paths: set[str]) -> bool:
    return any(path.startswith((f"{other}.", f"{other}[")) for other in paths if other != path)
