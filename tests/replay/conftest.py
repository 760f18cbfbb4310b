"""Fixtures for the replay feed tests: a real FeedContext and the shared sample data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import uuid6

from tradeloom.components import DeadLetter, FeedContext
from tradeloom.settings import ReconnectSettings

DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # the sample data kept with the tests


class Uuid7Ids:
    def new_id(self) -> UUID:
        return uuid6.uuid7()


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


CLOCK_NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class Context:
    """A real FeedContext plus the dead letters it collected."""

    def __init__(self) -> None:
        self.dead_letters: list[DeadLetter] = []
        self.feed = FeedContext(
            ids=Uuid7Ids(),
            clock=FixedClock(CLOCK_NOW),
            reconnect=ReconnectSettings(),
            logger=logging.getLogger("test.replay"),
            report_bad_input=self.dead_letters.append,
        )


@pytest.fixture
def context() -> Context:
    return Context()


@pytest.fixture
def data_dir() -> Path:
    assert DATA_DIR.is_dir(), f"sample data not found at {DATA_DIR}"
    return DATA_DIR


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a text file (exact bytes when given bytes) and return its path."""

    def write_file(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return write_file
