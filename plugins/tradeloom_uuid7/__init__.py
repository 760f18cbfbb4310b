"""Stock ``uuid7`` id generator: RFC 9562 version 7 UUIDs, strictly increasing per process.

Registered through the ``tradeloom`` entry point ``uuid7`` (module :mod:`tradeloom_uuid7.plugin`).
"""

from tradeloom_uuid7.generator import Uuid7Generator

__all__ = ["Uuid7Generator"]
