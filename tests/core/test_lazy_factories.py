"""Factories registered as "package.module:Name" references, imported when first built, and
packages that export their names lazily (tradeloom.lazy)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from tradeloom import Strategy, hookimpl
from tradeloom.errors import ConfigError, PluginError
from tradeloom.lazy import lazy_exports
from tradeloom.plugins import PluginManager

_counter = itertools.count()

HEAVY_MODULE = """
from decimal import Decimal
from tradeloom import Strategy

IMPORTED = True

class Patient(Strategy):
    def __init__(self, quantity: Decimal = Decimal(1)) -> None:
        self.quantity = quantity
"""


@pytest.fixture
def heavy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path that nothing has imported yet."""
    name = f"heavy_strategies_{next(_counter)}"
    (tmp_path / f"{name}.py").write_text(HEAVY_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


class ByReference:
    def __init__(self, references: dict[str, Any]) -> None:
        self.references = references

    @hookimpl
    def tradeloom_register_strategies(self) -> dict[str, Any]:
        return self.references


def test_a_reference_is_imported_only_when_built(heavy: str) -> None:
    manager = PluginManager().load(plugins=[ByReference({"patient": f"{heavy}:Patient"})])
    assert "patient" in manager.registrations()["strategy"]
    assert heavy not in sys.modules  # listed, not imported
    built = manager.create("strategy", "patient", {"quantity": "2.5"})
    assert heavy in sys.modules
    assert type(built).__name__ == "Patient" and str(built.quantity) == "2.5"


def test_parameters_are_checked_against_the_referenced_class(heavy: str) -> None:
    manager = PluginManager().load(plugins=[ByReference({"patient": f"{heavy}:Patient"})])
    with pytest.raises(ConfigError, match=r"strategy 'patient' .*unknown parameter"):
        manager.create("strategy", "patient", {"size": 1})


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            "no_such_package_xyz.strategies:Patient",
            "cannot import 'no_such_package_xyz.strategies'",
        ),
        ("{heavy}:Missing", "module '{heavy}' has no 'Missing'"),
    ],
)
def test_a_reference_that_does_not_resolve_names_the_plugin(
    heavy: str, reference: str, message: str
) -> None:
    plugin = ByReference({"patient": reference.format(heavy=heavy)})
    manager = PluginManager().load(plugins=[plugin])
    with pytest.raises(PluginError) as caught:
        manager.create("strategy", "patient")
    assert message.format(heavy=heavy) in str(caught.value)
    assert "strategy 'patient' (plugin " in str(caught.value)


def test_a_referenced_module_exiting_on_import_is_a_plugin_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"exits_when_built_{next(_counter)}"
    (tmp_path / f"{name}.py").write_text("import sys\nsys.exit(3)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager().load(plugins=[ByReference({"patient": f"{name}:Patient"})])
    with pytest.raises(PluginError, match=rf"cannot import '{name}': called sys.exit\(3\)"):
        manager.create("strategy", "patient")


def test_a_string_that_is_not_a_reference_fails_the_plugin() -> None:
    # Passed in from code, the plugin was asked for: its failure is raised (an installed one
    # is listed as failed, see test_plugin_manager).
    plugin = ByReference({"patient": "just some text"})
    manager = PluginManager()
    name = manager.register(plugin)
    manager.load(autoload=False)
    with pytest.raises(PluginError) as caught:
        manager.registrations()
    assert str(caught.value) == (
        f"plugin {name!r}: tradeloom_register_strategies failed: TypeError: factory "
        "'just some text' of 'patient' is neither callable nor a 'package.module:Name' reference"
    )


def test_lazy_exports_import_on_first_use(heavy: str) -> None:
    getattr_, names = lazy_exports("my_package", {"Patient": heavy, "IMPORTED": heavy})
    assert names == ["IMPORTED", "Patient"]
    assert heavy not in sys.modules
    assert getattr_("IMPORTED") is True
    assert heavy in sys.modules
    with pytest.raises(AttributeError, match="module 'my_package' has no attribute 'Other'"):
        getattr_("Other")


def test_plugin_packages_do_not_import_their_heavy_modules_on_load() -> None:
    # A fresh interpreter: loading every installed plugin must not import these.
    import subprocess

    code = (
        "import sys; from tradeloom.plugins import PluginManager; "
        "PluginManager().load().registrations(); "
        "print(sorted(m for m in ('psycopg', 'prometheus_client', 'tradeloom_kite.feed', "
        "'aiokafka') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_plugin_with_one_bad_registration_hook_contributes_nothing() -> None:
    class HalfBroken:
        @hookimpl
        def tradeloom_register_strategies(self):  # type: ignore[no-untyped-def]
            return {"fine": Strategy}

        @hookimpl
        def tradeloom_register_feeds(self):  # type: ignore[no-untyped-def]
            return {"nocall": 42}

        @hookimpl
        def tradeloom_register_executors(self):  # type: ignore[no-untyped-def]
            return ["paper"]

    manager = PluginManager()
    name = manager.register(HalfBroken())
    manager.load(autoload=False)
    # Registered from code, it fails loudly; installed, it is listed as failed with both.
    with pytest.raises(PluginError, match="tradeloom_register_feeds failed: TypeError: factory 42"):
        manager.registrations()
    manager.infos[name].source = "module"
    registry = manager.registrations()
    assert "fine" not in registry["strategy"] and "nocall" not in registry["feed"]
    info = {i.name: i for i in manager.plugin_list()}[name]
    assert info.registers == {}
    assert info.error == (
        "tradeloom_register_feeds failed: TypeError: factory 42 of 'nocall' is neither "
        "callable nor a 'package.module:Name' reference; tradeloom_register_executors failed: "
        "TypeError: must return a mapping of name to factory, not list"
    )
