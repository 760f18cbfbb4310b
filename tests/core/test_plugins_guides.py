"""The plugin guides' examples as files of a plugin author's project: the plugin module (the
page's block that defines it) and the page's tests, each as written, run by pytest in a
subprocess; and that the guides say the helpers for one's own tests need pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def block(page: str, containing: str) -> str:
    """The one python block of ``page`` that contains ``containing``."""
    (found,) = [
        text
        for text in FENCE.findall((DOCS / page).read_text(encoding="utf-8"))
        if containing in text
    ]
    return str(found)


def run_python(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
            "PYTHONPATH": str(cwd),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# (page, plugin module, the block defining the plugin, the blocks of tests)
GUIDES = {
    "strategy": (
        "writing-strategy.md",
        "my_strategies",
        "class Breakout(",
        ["def test_buys_the_breakout"],
    ),
    "executor": (
        "writing-executor.md",
        "my_executors",
        "class NextPriceExecutor(",
        ["class TestNextPriceExecutor(", "def test_commission_per_unit"],
    ),
    "feed": ("writing-feed.md", "my_feeds", "class JsonLinesFeed(", ["class TestJsonLinesFeed("]),
}


@pytest.mark.parametrize("guide", list(GUIDES))
def test_a_guides_tests_run_as_written_next_to_its_plugin(tmp_path: Path, guide: str) -> None:
    page, module, plugin, tests = GUIDES[guide]
    (tmp_path / f"{module}.py").write_text(block(page, plugin))
    for index, test in enumerate(tests):
        (tmp_path / f"test_{guide}_{index}.py").write_text(block(page, test))
    done = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout.splitlines()[-1]


NO_PYTEST = """
import sys

sys.modules["pytest"] = None  # as if it were not installed: importing it fails
for module, helper in [
    ("tradeloom.testing.feeds", "collect_events"),
    ("tradeloom.testing.executors", "ExecutorHarness"),
]:
    try:
        getattr(__import__(module, fromlist=[helper]), helper)
    except ModuleNotFoundError as exc:
        print(module, exc.name)
"""


@pytest.mark.parametrize(
    ("page", "helper", "module"),
    [
        ("writing-feed.md", "collect_events(feed, limit=", "tradeloom.testing.feeds"),
        ("writing-executor.md", "`ExecutorHarness` drives", "tradeloom.testing.executors"),
    ],
)
def test_the_guides_say_that_the_helpers_for_ones_own_tests_need_pytest(
    tmp_path: Path, page: str, helper: str, module: str
) -> None:
    # They come from the modules of the conformance suites, which import pytest.
    done = run_python(["-c", NO_PYTEST], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{module} pytest" in done.stdout.splitlines()
    text = (DOCS / page).read_text(encoding="utf-8")
    paragraph = " ".join(text[text.index(helper) :].split("\n\n")[0].split())
    assert f"`{module}`, which imports pytest" in paragraph
    assert "needs pytest installed" in paragraph
