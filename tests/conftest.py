"""Shared fixtures: where the real sample data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample market data kept with the tests (tests/data; read-only)."""
    if not SAMPLE_DATA.is_dir():
        pytest.fail(f"sample data not found at {SAMPLE_DATA}")
    return SAMPLE_DATA
