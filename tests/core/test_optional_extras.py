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
