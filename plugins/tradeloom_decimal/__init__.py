"""Stock ``decimal`` codec: events as JSON bytes with exact Decimals.

Registered through the ``tradeloom`` entry point ``decimal`` (module
:mod:`tradeloom_decimal.plugin`). See ``docs/codec.md`` for the wire format.
"""

from tradeloom_decimal.codec import DecimalJsonCodec

__all__ = ["DecimalJsonCodec"]
