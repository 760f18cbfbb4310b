"""The conformance suite itself: run against deliberately broken back ends, it must fail the
tests that cover each broken rule (and pass the rest)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from xml.etree import ElementTree

import pytest

BROKEN_BACKENDS = textwrap.dedent(
    """
    import pytest
    from tradeloom.events import Fill, PortfolioSnapshot
    from tradeloom_memory.persistence import MemoryPersistence
    from tradeloom.testing.persistence import PersistenceConformance


    class Base(PersistenceConformance):
        backend = MemoryPersistence

        @pytest.fixture
        def persistence(self):
            return self.backend()

        def reopen(self, persistence):
            return self.backend(persistence.store)

        def corrupt_a_snapshot(self, persistence, portfolio_id):
            persistence.store.snapshots[portfolio_id] = "{}"

        def corrupt_a_fill(self, persistence, portfolio_id):
            fills = persistence.store.fills
            fills[:] = [(o, "{}" if o == portfolio_id else d) for o, d in fills]


    class NoDedupe(MemoryPersistence):
        def record_fills(self, fills):
            self.store.fills.extend((f.strategy_id, f.model_dump_json()) for f in fills)


    class Normalizes(MemoryPersistence):
        def save_snapshots(self, snapshots):
            super().save_snapshots(
                [s.model_copy(update={"cash": s.cash.normalize()}) for s in snapshots]
            )


    class NotAtomic(MemoryPersistence):
        def save_snapshots(self, snapshots):
            for snapshot in snapshots:
                self.store.snapshots[snapshot.portfolio_id] = snapshot.model_dump_json()


    class FirstWins(MemoryPersistence):
        def save_snapshots(self, snapshots):
            for snapshot in snapshots:
                self.store.snapshots.setdefault(snapshot.portfolio_id, snapshot.model_dump_json())


    class SilentReset(MemoryPersistence):
        def load_snapshots(self):
            try:
                return super().load_snapshots()
            except Exception:
                self.store.snapshots.clear()
                return {}


    class SkipsBadFills(MemoryPersistence):
        def load_fills(self, portfolio_id=None):
            fills = []
            for owner, data in self.store.fills:
                try:
                    fills.append(Fill.model_validate_json(data))
                except ValueError:
                    continue
            return [f for f in fills if portfolio_id is None or f.strategy_id == portfolio_id]


    class ReadsAnyVersion(MemoryPersistence):
        def load_fills(self, portfolio_id=None):
            return [
                Fill.model_validate_json(data)
                for owner, data in self.store.fills
                if portfolio_id is None or owner == portfolio_id
            ]

        def load_snapshots(self):
            return {
                pid: PortfolioSnapshot.model_validate_json(data)
                for pid, data in self.store.snapshots.items()
            }


    class MetadataKeyByKey(MemoryPersistence):
        def save_metadata(self, items):
            for key, value in items.items():
                super().save_metadata({key: value})


    class NoFilter(MemoryPersistence):
        def load_fills(self, portfolio_id=None):
            return super().load_fills()


    class TestNoDedupe(Base):
        backend = NoDedupe


    class TestNormalizes(Base):
        backend = Normalizes


    class TestNotAtomic(Base):
        backend = NotAtomic


    class TestFirstWins(Base):
        backend = FirstWins


    class TestSilentReset(Base):
        backend = SilentReset


    class TestNoFilter(Base):
        backend = NoFilter


    class TestSkipsBadFills(Base):
        backend = SkipsBadFills


    class TestReadsAnyVersion(Base):
        backend = ReadsAnyVersion


    class TestMetadataKeyByKey(Base):
        backend = MetadataKeyByKey


    class TestNoCorruptionHook(Base):
        supports_corruption_test = False


    class TestNoFillCorruptionHook(Base):
        corrupt_a_fill = PersistenceConformance.corrupt_a_fill


    class TestMissingFixture(PersistenceConformance):
        pass
    """
)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("suite")
    (folder / "test_broken_backends.py").write_text(BROKEN_BACKENDS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--tb=no", "-p", "no:cacheprovider",
         "--junitxml=report.xml", "test_broken_backends.py"],
        cwd=folder, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    results: dict[str, str] = {}
    report = ElementTree.parse(folder / "report.xml")
    for case in report.iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "PASSED"
        for child, word in (("failure", "FAILED"), ("error", "ERROR"), ("skipped", "SKIPPED")):
            if case.find(child) is not None:
                outcome = word
        results[f"{cls}::{case.get('name')}"] = outcome
    assert results, done.stdout + done.stderr
    return results


def _failed(outcomes: dict[str, str], cls: str) -> set[str]:
    prefix = f"{cls}::"
    return {
        test.removeprefix(prefix)
        for test, outcome in outcomes.items()
        if test.startswith(prefix) and outcome in {"FAILED", "ERROR"}
    }


@pytest.mark.parametrize(
    ("cls", "must_fail"),
    [
        (
            "TestNoDedupe",
            {
                "test_same_fill_twice_is_stored_once",
                "test_same_order_id_with_other_fill_id_is_ignored",
                "test_duplicate_order_ids_within_one_batch",
            },
        ),
        ("TestNormalizes", {"test_snapshot_round_trip_is_exact"}),
        ("TestNotAtomic", {"test_save_snapshots_is_atomic"}),
        ("TestFirstWins", {"test_latest_snapshot_per_portfolio"}),
        ("TestSilentReset", {"test_corrupt_snapshot_raises"}),
        ("TestNoFilter", {"test_load_fills_of_one_portfolio", "test_awkward_portfolio_ids"}),
        ("TestSkipsBadFills", {"test_corrupt_fill_raises"}),
        ("TestMetadataKeyByKey", {"test_metadata_that_is_not_text_is_refused"}),
        (
            "TestReadsAnyVersion",
            {
                "test_fill_of_a_newer_schema_version_is_refused",
                "test_snapshot_of_a_newer_schema_version_is_refused",
            },
        ),
    ],
)
def test_suite_fails_the_broken_rule(
    outcomes: dict[str, str], cls: str, must_fail: set[str]
) -> None:
    failed = _failed(outcomes, cls)
    assert must_fail <= failed
    # Each breakage is caught by the tests about it, not by everything at once.
    assert len(failed) <= len(must_fail) + 3, failed


def test_correct_backend_passes_everything(outcomes: dict[str, str]) -> None:
    base = {test: outcome for test, outcome in outcomes.items() if test.startswith("Base::")}
    assert base == {}  # the base class itself is not collected (its name has no Test prefix)
    no_hook = {t: o for t, o in outcomes.items() if t.startswith("TestNoCorruptionHook::")}
    assert len(no_hook) >= 15
    assert no_hook.pop("TestNoCorruptionHook::test_corrupt_snapshot_raises") == "SKIPPED"
    assert no_hook.pop("TestNoCorruptionHook::test_corrupt_fill_raises") == "SKIPPED"
    assert set(no_hook.values()) == {"PASSED"}
    # The damaged-fill test is optional: without corrupt_a_fill, it is skipped, not passed.
    no_fill_hook = {t: o for t, o in outcomes.items() if t.startswith("TestNoFillCorruptionHook::")}
    assert no_fill_hook.pop("TestNoFillCorruptionHook::test_corrupt_fill_raises") == "SKIPPED"
    assert set(no_fill_hook.values()) == {"PASSED"}


def test_missing_fixture_is_an_error(outcomes: dict[str, str]) -> None:
    missing = {t: o for t, o in outcomes.items() if t.startswith("TestMissingFixture::")}
    assert missing and set(missing.values()) == {"ERROR"}
