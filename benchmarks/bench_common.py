"""Helpers shared by the benchmark scripts: machine facts, memory, child-process results."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from importlib import metadata
from typing import Any

RESULT_MARK = "BENCH-RESULT "


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``getrusage`` ``ru_maxrss``), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    """Resident set size now (``/proc/self/statm``), in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, Python and library versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in ("tradeloom", "pydantic", "pydantic-core", "anyio", "backtrader")
        },
    }


def emit(result: dict[str, Any]) -> None:
    """Hand a child's result to the parent: one marked JSON line on stdout."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def parse(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])  # type: ignore[no-any-return]
    raise ValueError("the child printed no result line")
