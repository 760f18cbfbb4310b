"""Registers the stock ``decimal`` codec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl
from tradeloom_decimal.codec import DecimalJsonCodec


@hookimpl
def tradeloom_register_codecs() -> Mapping[str, Any]:
    return {"decimal": DecimalJsonCodec}
