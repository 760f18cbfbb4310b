"""Shared fixtures: where the real sample data lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

SAMPLE_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample market data kept with the tests (tests/data; read-only)."""
    if not SAMPLE_DATA.is_dir():
        pytest.fail(f"sample data not found at {SAMPLE_DATA}")
    return SAMPLE_DATA


# Hypothesis fails an example that takes over 200 ms by default: a timing check, which a busy
# host (the suite runs on two workers) fails for no fault of the code. Speed is measured in
# benchmarks/, not here.
settings.register_profile("tradeloom", deadline=None)
settings.load_profile("tradeloom")
