from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import pytest
import uuid6
from tradeloom.components import DeadLetter, FeedContext
from tradeloom.settings import ReconnectSettings

from kite_frames import CLOCK_NOW


class Uuid7Ids:
    def new_id(self) -> UUID:
        return uuid6.uuid7()


class FixedClock:
    def __init__(self, now: datetime = CLOCK_NOW) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dead_letters() -> list[DeadLetter]:
    return []


@pytest.fixture
def make_ctx(dead_letters: list[DeadLetter]) -> Callable[..., FeedContext]:
    def build(**reconnect: float) -> FeedContext:
        settings = {"base_delay_seconds": 0.01, "max_delay_seconds": 0.05, "max_attempts": 3}
        settings.update(reconnect)
        return FeedContext(
            ids=Uuid7Ids(),
            clock=FixedClock(),
            reconnect=ReconnectSettings(**settings),
            logger=logging.getLogger("test"),
            report_bad_input=dead_letters.append,
        )

    return build
