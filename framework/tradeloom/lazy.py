"""Names a package exports, imported only when first used.

Every tradeloom process imports every installed plugin's entry-point module, and with it the
plugin's package. A package whose ``__init__`` imports its heavy modules (a database driver,
a WebSocket client, a metrics library) makes every run pay for them, used or not. Exporting
the names lazily keeps ``from package import Name`` working without that cost::

    __getattr__, __all__ = lazy_exports(__name__, {"Feed": "my_package.feed"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """Return a module ``__getattr__`` (PEP 562) that imports each name of ``where`` from the
    module it maps to when it is first asked for, and the sorted ``__all__`` of those names."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__, sorted(where)
