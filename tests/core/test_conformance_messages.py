"""A failing conformance check says what it compared: tradeloom.testing is an installed
package, whose asserts pytest rewrites only because tradeloom.testing asks it to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BROKEN_BACK_END = """
import pytest
from tradeloom.testing.persistence import PersistenceConformance
from tradeloom_memory.persistence import MemoryPersistence


class NotIdempotent(MemoryPersistence):
    def record_fills(self, fills):  # appends a fill already stored again
        self._check_open()
        for fill in fills:
            self.store.fills.append((fill.strategy_id, fill.model_dump_json()))


class TestNotIdempotent(PersistenceConformance):
    @pytest.fixture
    def persistence(self):
        return NotIdempotent()
"""


def test_a_failing_conformance_assert_shows_both_sides(tmp_path: Path) -> None:
    (tmp_path / "test_back_end.py").write_text(BROKEN_BACK_END)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "same_fill_twice"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    failures = [line for line in done.stdout.splitlines() if line.startswith("E ")]
    assert failures, done.stdout[-2000:]
    # "AssertionError: assert [Fill(...), ...] == [Fill(...)]", not a bare "AssertionError"
    assert failures[0].startswith("E       AssertionError: assert [Fill("), failures[:5]
