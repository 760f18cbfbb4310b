"""tradeloom: event-driven trading pipelines built from pluggy plugins."""

from __future__ import annotations

import pluggy

from tradeloom.hookspecs import hookspec

hookimpl = pluggy.HookimplMarker("tradeloom")
"""Marker for plugin hook implementations: ``@tradeloom.hookimpl``."""

__all__ = ["hookimpl", "hookspec"]
