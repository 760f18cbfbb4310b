"""Stock plugins whose extra is not installed are listed, and say what to install when used."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["aiokafka"] = None  # as if the redpanda extra were not installed
from tradeloom.errors import PluginError
from tradeloom.plugins import PluginManager
manager = PluginManager().load()
info = {i.name: i for i in manager.plugin_list()}["redpanda"]
print("status", info.error, sorted(info.registers.items()))
try:
    manager.create("transport", "redpanda", {})
except PluginError as exc:
    print("error", exc)
"""


def test_redpanda_without_aiokafka_is_listed_and_explains_itself_when_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "status None [('feed', ['redpanda']), ('transport', ['redpanda'])]" in done.stdout
    assert "error the redpanda plugin needs aiokafka: pip install 'tradeloom[redpanda]'" in (
        done.stdout
    )


WITHOUT_PYTEST = """
import sys
sys.modules["pytest"] = None  # as in an application that does not install pytest
from tradeloom import Strategy
from tradeloom.testing import bars, run_strategy

class BuyOnce(Strategy):
    def on_bar(self, bar, ctx):
        if not ctx.position("X"):
            ctx.buy("X", 1)

result = run_strategy(BuyOnce(), bars("X", ["10", "11", "12"]))
print("fills", [str(fill.price) for fill in result.fills])
try:
    import tradeloom.testing.feeds
except ImportError as exc:
    print("suite", type(exc).__name__)
"""


def test_the_strategy_test_helpers_work_without_pytest() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYTEST], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["fills ['10']", "suite ModuleNotFoundError"]
