"""The closest known name to a misspelled one, for error and warning messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_name(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name ``name`` most likely misspells: one that differs only in case, else the
    closest by :func:`difflib.get_close_matches` (at least ``cutoff`` alike); ``None`` when
    none is close."""
    candidates = list(known)
    folded = [candidate for candidate in candidates if candidate.lower() == name.lower()]
    if folded:
        return folded[0]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None
