from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tradeloom.errors import ConfigError, DuplicateComponentError, UnknownComponentError
from tradeloom.plugins import PluginManager

from .plugin_dists import make_distribution

_counter = itertools.count()

STRATEGY_PLUGIN = """
from decimal import Decimal
from tradeloom import Strategy, hookimpl

class BuyOnce(Strategy):
    def __init__(self, quantity: Decimal = Decimal(1), instrument: str = "X") -> None:
        self.quantity = quantity
        self.done = False

    def on_bar(self, bar, ctx):
        if not self.done:
            ctx.buy(bar.instrument, self.quantity)
            self.done = True

@hookimpl
def tradeloom_register_strategies():
    return {"%(name)s": BuyOnce}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("TRADELOOM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("TRADELOOM_BLOCK_PLUGINS", raising=False)
    return root


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}_{id(_counter)}"


def test_third_party_strategy_is_found_with_its_distribution(site: Path) -> None:
    module = unique("acme_strats")
    make_distribution(
        site,
        "acme-strategies",
        {module: STRATEGY_PLUGIN % {"name": "buy_once"}},
        {"acme": module},
        version="2.0.1",
    )
    manager = PluginManager().load()
    info = {i.name: i for i in manager.plugin_list()}["acme"]
    assert (info.distribution, info.version, info.error) == ("acme-strategies", "2.0.1", None)
    assert info.registers == {"strategy": ["buy_once"]}
    strategy = manager.create("strategy", "buy_once", {"quantity": "2.5"})
    assert str(strategy.quantity) == "2.5"
    # the stock plugins come through the same path
    assert manager.factory("executor", "paper").plugin == "paper"


def test_plugin_that_fails_to_import_is_reported_and_harms_nothing_else(site: Path) -> None:
    module = unique("broken_plugin")
    make_distribution(
        site,
        "broken-dist",
        {module: "raise RuntimeError('database driver missing')\n"},
        {"broken": module},
    )
    manager = PluginManager().load()
    info = {i.name: i for i in manager.plugin_list()}["broken"]
    assert info.distribution == "broken-dist"
    assert info.error is not None and "RuntimeError: database driver missing" in info.error
    assert manager.factory("strategy", "sma_cross").plugin == "strategies"
    with pytest.raises(UnknownComponentError) as caught:
        manager.factory("feed", "broken_feed")
    message = str(caught.value)
    assert "unknown feed 'broken_feed'" in message and "replay" in message
    assert "broken (broken-dist): RuntimeError: database driver missing" in message


def test_two_plugins_registering_one_name_is_an_error_naming_both(site: Path) -> None:
    first, second = unique("dup_a"), unique("dup_b")
    make_distribution(site, "dup-a", {first: STRATEGY_PLUGIN % {"name": "twin"}}, {"dupa": first})
    make_distribution(site, "dup-b", {second: STRATEGY_PLUGIN % {"name": "twin"}}, {"dupb": second})
    manager = PluginManager().load()
    with pytest.raises(DuplicateComponentError) as caught:
        manager.factory("strategy", "twin")
    assert "strategy 'twin' is registered by two plugins" in str(caught.value)
    assert "'dupa'" in str(caught.value) and "'dupb'" in str(caught.value)
    assert "block one of them" in str(caught.value)
    # Only the name in conflict is refused: everything else still builds, and runs warn.
    assert manager.factory("strategy", "sma_cross").plugin == "strategies"
    assert "twin" not in manager.registrations()["strategy"]
    assert any("strategy 'twin' is registered by two plugins" in m for m in manager.problems())
    # the listing still works, and blocking one of them resolves the conflict
    listed = {i.name: i for i in manager.plugin_list()}
    assert listed["dupa"].registers == {"strategy": ["twin"]}
    assert listed["dupb"].registers == {"strategy": ["twin"]}
    resolved = PluginManager().load(block=["dupb"])
    assert resolved.factory("strategy", "twin").plugin == "dupa"


def test_blocking_from_the_environment_and_disabling_autoload(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELOOM_BLOCK_PLUGINS", "paper, validators")
    manager = PluginManager().load()
    infos = {i.name: i for i in manager.plugin_list()}
    assert infos["paper"].blocked and infos["validators"].blocked
    with pytest.raises(UnknownComponentError, match=r"blocked plugins: .*paper"):
        manager.factory("executor", "paper")

    monkeypatch.delenv("TRADELOOM_BLOCK_PLUGINS")
    monkeypatch.setenv("TRADELOOM_DISABLE_PLUGIN_AUTOLOAD", "1")
    manager = PluginManager().load(enable=["paper"])
    assert set(manager.registrations()["executor"]) == {"paper"}
    assert manager.registrations()["strategy"] == {}
    assert "autoload is disabled" in (
        {i.name: i for i in manager.plugin_list()}["strategies"].error or ""
    )
    with pytest.raises(UnknownComponentError) as caught:
        manager.factory("id_generator", "uuid7")
    assert "plugin autoload is disabled, so these installed plugins were not loaded: " in str(
        caught.value
    )
    assert "uuid7" in str(caught.value) and "[plugins] enable" in str(caught.value)


def test_component_parameters_are_checked_against_the_factory(site: Path) -> None:
    manager = PluginManager().load()
    with pytest.raises(ConfigError) as caught:
        manager.create("strategy", "sma_cross", {"fsat": 5})
    message = str(caught.value)
    assert "strategy 'sma_cross' (plugin 'strategies')" in message
    assert "fsat: unknown parameter" in message and "accepted: fast, slow, quantity" in message
    with pytest.raises(ConfigError, match="fast: Input should be a valid integer"):
        manager.create("strategy", "sma_cross", {"fast": "ten"})
    with pytest.raises(ConfigError, match=r"fast \(30\) must be shorter than slow \(10\)"):
        manager.create("strategy", "sma_cross", {"fast": 30, "slow": 10})


def test_a_value_fitting_no_member_of_a_union_says_what_the_parameter_accepts() -> None:
    # pydantic reports one error per union member, named by its internal schema
    # ("path.lax-or-strict[lax=union[json-or-python[..."): one readable problem instead.
    manager = PluginManager().load()
    with pytest.raises(ConfigError) as caught:
        manager.create("feed", "replay", {"path": 5, "instrument": "X", "header": "maybe"})
    problems = str(caught.value).split(": invalid parameters: ")[1].split(" (accepted:")[0]
    assert problems == (
        "path: 5 is not a valid str | Path | list[str | Path] | None; "
        "header: Input should be a valid boolean, unable to interpret input"
    )
    with pytest.raises(ConfigError, match=r"path: \['a', 5\] is not a valid str \| Path"):
        manager.create("feed", "replay", {"path": ["a", 5], "instrument": "X"})


def test_modules_and_objects_can_be_registered_explicitly(site: Path) -> None:
    module = unique("explicit_plugin")
    (site / f"{module}.py").write_text(STRATEGY_PLUGIN % {"name": "explicit"})
    missing = unique("does_not_exist")
    manager = PluginManager().load(modules=[module, missing])
    assert manager.factory("strategy", "explicit").plugin == module
    failed = [i for i in manager.plugin_list() if i.source == "module" and i.error]
    assert [i.error for i in failed] == [
        f"no module named {missing!r} in the current directory, PYTHONPATH or the installed "
        "packages"
    ]


def test_a_module_that_implements_no_hook_is_loaded_with_a_warning(site: Path) -> None:
    # Imported for what importing it does, maybe: not refused, but not silent either.
    module = unique("no_hooks")
    (site / f"{module}.py").write_text("x = 1\n")
    manager = PluginManager().load(modules=[module])
    (listed,) = [i for i in manager.plugin_list() if i.name == module]
    assert listed.loaded and listed.error is None
    assert listed.warning == (
        f"module {module} implements no tradeloom hook: it was imported, and registers "
        "nothing (a plugin module holds @tradeloom.hookimpl functions)"
    )
    assert f"plugin {module!r}: {listed.warning}" in manager.problems()
    assert manager.failed_modules([module]) == []


def test_a_local_file_named_like_a_standard_module_is_said_to_be_shadowed(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `tradeloom -p code` imported the standard library's code module, not ./code.py: the
    # plugin seemed loaded and its strategy was unknown.
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "code.py").write_text(STRATEGY_PLUGIN % {"name": "mine"})
    monkeypatch.chdir(folder)
    manager = PluginManager().load(modules=["code"])
    (listed,) = [i for i in manager.plugin_list() if i.name == "code"]
    assert listed.warning is not None
    assert listed.warning.startswith(
        "module code implements no tradeloom hook: code.py in the current directory is not "
        "what was imported ("
    )
    assert listed.warning.endswith(
        "the standard library and installed packages come first); rename the file"
    )


def test_a_module_whose_own_import_is_missing_names_that_import_and_where(site: Path) -> None:
    module = unique("imports_missing")
    missing = module + "_helpers"  # named like the module: the message must not blame it
    (site / f"{module}.py").write_text(f"import {missing}\n")
    manager = PluginManager().load(modules=[module])
    (failed,) = [i for i in manager.plugin_list() if i.name == module]
    assert failed.error is not None
    assert failed.error.startswith(f"ModuleNotFoundError: No module named {missing!r} (")
    assert f"{module}.py:1)" in failed.error


def test_a_module_plugin_that_explains_its_failure_is_listed_not_raised(site: Path) -> None:
    module = unique("needs_extra")
    make_distribution(
        site,
        "needs-extra-dist",
        {
            module: "from tradeloom.errors import PluginError\n"
            "raise PluginError(\"needs extra foo: pip install 'needs-extra-dist[foo]'\")\n"
        },
        {},
        version="0.3.0",
    )
    manager = PluginManager().load(modules=[module])
    info = {i.name: i for i in manager.plugin_list()}[module]
    assert info.error == "needs extra foo: pip install 'needs-extra-dist[foo]'"
    assert (info.distribution, info.version) == ("needs-extra-dist", "0.3.0")
    assert manager.factory("executor", "paper").plugin == "paper"  # the others still load
    with pytest.raises(ConfigError) as caught:
        manager.factory("executor", "foo")
    assert f"{module} (needs-extra-dist): needs extra foo" in str(caught.value)


def test_a_plugin_with_an_invalid_hook_is_listed_as_failed_and_harms_nothing(site: Path) -> None:
    module = unique("badhook")
    make_distribution(
        site,
        "badhook-dist",
        {module: "from tradeloom import hookimpl\n@hookimpl\ndef tradeloom_no_such_hook(): ...\n"},
        {"badhook": module},
    )
    manager = PluginManager().load()
    info = {i.name: i for i in manager.plugin_list()}["badhook"]
    assert info.error is not None and "tradeloom_no_such_hook" in info.error
    assert manager.factory("executor", "paper").plugin == "paper"


def test_a_hook_without_hookimpl_fails_its_plugin_instead_of_doing_nothing(site: Path) -> None:
    module = unique("undecorated")
    (site / f"{module}.py").write_text(
        "from tradeloom import Strategy\n"
        "class S(Strategy): ...\n"
        "def tradeloom_register_strategies():\n    return {'undecorated': S}\n"
    )
    manager = PluginManager().load(modules=[module])
    (info,) = [i for i in manager.plugin_list() if i.name == module]
    assert info.error == (
        f"plugin {module!r} defines tradeloom_register_strategies without @hookimpl, so "
        "nothing would call it: decorate it with @tradeloom.hookimpl"
    )
    assert manager.failed_modules([module])  # so -p MODULE and [plugins] modules stop


def test_a_misspelt_hook_and_component_name_get_a_suggestion(site: Path) -> None:
    module = unique("misspelt")
    (site / f"{module}.py").write_text(
        "from tradeloom import hookimpl\n@hookimpl\ndef tradeloom_register_strategy(): ...\n"
    )
    manager = PluginManager().load(modules=[module])
    (info,) = [i for i in manager.plugin_list() if i.name == module]
    assert info.error is not None
    assert (
        "unknown hook(s) tradeloom_register_strategy "
        "(did you mean tradeloom_register_strategies?)" in info.error
    )
    with pytest.raises(
        UnknownComponentError, match=r"unknown strategy 'sma_cros' \(did you mean 'sma_cross'\?\)"
    ):
        manager.factory("strategy", "sma_cros")


def test_a_registration_hook_that_raises_marks_only_its_plugin_failed(site: Path) -> None:
    module = unique("raising_register")
    make_distribution(
        site,
        "raising-dist",
        {
            module: "from tradeloom import hookimpl\n@hookimpl\ndef tradeloom_register_feeds():\n"
            "    raise LookupError('no licence file')\n"
        },
        {"raising": module},
    )
    manager = PluginManager().load()
    assert "replay" in manager.registrations()["feed"]
    info = {i.name: i for i in manager.plugin_list()}["raising"]
    # Located in the plugin's own code, as an import error is.
    assert info.error == (
        f"tradeloom_register_feeds failed: LookupError: no licence file ({site / module}.py:4)"
    )


def test_an_entry_point_name_used_by_two_distributions_never_shadows(site: Path) -> None:
    module = unique("impostor")
    make_distribution(
        site, "other-dist", {module: STRATEGY_PLUGIN % {"name": "other"}}, {"paper": module}
    )
    manager = PluginManager().load()
    infos = {i.name: i for i in manager.plugin_list()}
    assert infos["paper"].distribution == "tradeloom"
    assert manager.factory("executor", "paper").plugin == "paper"
    clash = infos["paper (other-dist)"]
    assert clash.error is not None and "already used by distribution 'tradeloom'" in clash.error


def test_every_conflict_is_reported_and_the_listing_stays_complete(site: Path) -> None:
    module = unique("double_trouble")
    code = (
        "from tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_register_executors():\n    return {'paper': object}\n"
        "@hookimpl\ndef tradeloom_register_codecs():\n    return {'decimal': object}\n"
    )
    make_distribution(site, "trouble-dist", {module: code}, {"trouble": module})
    manager = PluginManager().load()
    conflicts = "; ".join(manager.conflicts)
    assert "executor 'paper'" in conflicts and "codec 'decimal'" in conflicts
    with pytest.raises(DuplicateComponentError, match="executor 'paper' is registered by two"):
        manager.create("executor", "paper")
    infos = {i.name: i for i in manager.plugin_list()}
    assert infos["sqlite"].registers == {"persistence": ["sqlite"]}
    assert infos["uuid7"].registers == {"id_generator": ["uuid7"]}


def test_float_and_secret_parameters(site: Path) -> None:
    from pydantic import SecretStr

    manager = PluginManager().load()
    with pytest.raises(ConfigError, match=r"quantity: float 0\.1 is not accepted"):
        manager.create("strategy", "sma_cross", {"quantity": 0.1})
    with pytest.raises(ConfigError, match=r"commission_bps: float 1\.1 is not accepted"):
        manager.create("executor", "paper", {"commission_bps": 1.1})
    with pytest.raises(ConfigError, match=r"parameters: fast: true is a boolean; it takes int"):
        manager.create("strategy", "sma_cross", {"fast": True})
    with pytest.raises(ConfigError, match=r"quantity: false is a boolean; it takes Decimal"):
        manager.create("strategy", "sma_cross", {"quantity": False})
    columns = {"ts": "ts", "last_price": True}  # a column index must be a number
    with pytest.raises(ConfigError, match=r"columns: true is a boolean \(at last_price\); it"):
        manager.create("feed", "replay", {"path": "x.csv", "format": "custom", "columns": columns})
    module = unique("secretive")
    (site / f"{module}.py").write_text(
        "from tradeloom import hookimpl\n"
        "class Feed:\n"
        "    def __init__(self, api_key: str, url: str = 'x') -> None:\n"
        "        self.api_key = api_key\n"
        "    def events(self, ctx):\n"
        "        return []\n"
        "@hookimpl\ndef tradeloom_register_feeds():\n    return {'secretive': Feed}\n"
    )
    manager = PluginManager().load(modules=[module])
    feed = manager.create("feed", "secretive", {"api_key": SecretStr("k-123")})
    assert feed.api_key == "k-123"


def test_block_and_enable_names_no_plugin_has_are_reported(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELOOM_BLOCK_PLUGINS", "validatrs")
    manager = PluginManager().load(block=["papr", "sqlite"], enable=["uuid7x", "memory"])
    messages = manager.unknown_names
    assert len(messages) == 3, messages
    assert messages[0].startswith("blocked plugin 'papr' matches no installed plugin")
    assert "(did you mean 'paper'?)" in messages[0]
    assert "(did you mean 'validators'?)" in messages[1]
    assert messages[2].startswith("enabled plugin 'uuid7x' matches no installed plugin")
    assert "(did you mean 'uuid7'?)" in messages[2]
    # the typo blocked nothing: the plugin meant to be blocked still loads
    assert manager.factory("executor", "paper").plugin == "paper"
    # a module plugin is blocked by its module name; names that exist are not reported
    monkeypatch.delenv("TRADELOOM_BLOCK_PLUGINS")
    clean = PluginManager().load(
        block=["sqlite", "tradeloom_paper.plugin"], modules=["tradeloom_paper.plugin"]
    )
    assert clean.unknown_names == []
    assert {i.name: i for i in clean.plugin_list()}["tradeloom_paper.plugin"].blocked


def test_a_module_that_is_installed_and_also_given_is_registered_once(site: Path) -> None:
    module = unique("installed_too")
    make_distribution(
        site, "installed-too", {module: STRATEGY_PLUGIN % {"name": "once"}}, {"once": module}
    )
    imported = __import__(module)
    manager = PluginManager().load(modules=[module], plugins=[imported])
    assert manager.register(imported) == "once"  # the entry point's name, no error
    assert manager.factory("strategy", "once").plugin == "once"
    listed = [info for info in manager.plugin_list() if info.name in ("once", module)]
    assert [(info.name, info.error) for info in listed] == [("once", None)]


def test_a_run_warns_about_a_plugin_that_failed_to_load(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = unique("hook_raises")
    code = (
        "from tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_register_strategies():\n    raise RuntimeError('no licence')\n"
    )
    make_distribution(site, "raises-dist", {module: code}, {"raises": module})
    import tradeloom
    from tradeloom.testing import bars

    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        tradeloom.backtest({"strategies": [{"name": "sma_cross"}]}, events=bars("X", ["1", "2"]))
    assert (
        "plugin 'raises' (raises-dist) failed to load and is not used: "
        f"tradeloom_register_strategies failed: RuntimeError: no licence ({site / module}.py:4)"
    ) in caplog.messages


@pytest.mark.parametrize("twice", [False, True])
def test_a_module_named_again_keeps_its_listing(site: Path, twice: bool) -> None:
    # -p m -p m, or [plugins] modules plus -p m: registered once, and still listed.
    module = unique("named_twice")
    (site / f"{module}.py").write_text(STRATEGY_PLUGIN % {"name": "twice"})
    manager = PluginManager().load(modules=[module, module] if twice else [module])
    listed = [(i.name, i.source, i.error) for i in manager.plugin_list() if i.name == module]
    assert listed == [(module, "module", None)]
    assert {i.name: i for i in manager.plugin_list()}[module].registers == {"strategy": ["twice"]}
    assert manager.factory("strategy", "twice").plugin == module
    assert manager.failed_modules([module, module]) == []


def test_a_module_installed_under_an_entry_point_of_its_own_name_keeps_that_listing(
    site: Path,
) -> None:
    # The README's pattern: entry point `my_strategies = "my_strategies"` and
    # [plugins] modules = ["my_strategies"] (or -p my_strategies).
    module = unique("my_strategies")
    make_distribution(
        site,
        "my-strategies",
        {module: STRATEGY_PLUGIN % {"name": "own_name"}},
        {module: module},
        version="0.4.0",
    )
    manager = PluginManager().load(modules=[module, module])
    listed = [i for i in manager.plugin_list() if i.name == module]
    assert [(i.source, i.distribution, i.version, i.error) for i in listed] == [
        ("entry point", "my-strategies", "0.4.0", None)
    ]
    assert listed[0].registers == {"strategy": ["own_name"]}
    assert manager.factory("strategy", "own_name").plugin == module
    assert manager.failed_modules([module]) == []
    # blocked by that name: the entry point's listing, blocked, and nothing imported
    blocked = PluginManager().load(modules=[module], block=[module])
    (info,) = [i for i in blocked.plugin_list() if i.name == module]
    assert (info.source, info.distribution, info.blocked) == ("entry point", "my-strategies", True)


def test_an_entry_point_that_cannot_load_is_located_in_the_plugin_not_in_importlib(
    site: Path,
) -> None:
    module = unique("located")
    make_distribution(
        site,
        "located-dist",
        {module: "import os\nraise RuntimeError('no licence')\n"},
        {
            "raises_here": module,
            "no_attribute": "os:no_such_attribute",
            "no_module": unique("no_such_module"),
        },
    )
    manager = PluginManager().load()
    errors = {i.name: i.error or "" for i in manager.plugin_list()}
    assert errors["raises_here"] == f"RuntimeError: no licence ({site / module}.py:2)"
    # nothing of the plugin's own raised: no place, rather than one in importlib
    assert (
        errors["no_attribute"] == "AttributeError: module 'os' has no attribute 'no_such_attribute'"
    )
    assert errors["no_module"].startswith("ModuleNotFoundError: No module named ")
    assert errors["no_module"].endswith("'")


def test_an_invalid_hook_implementation_is_described_on_one_line(site: Path) -> None:
    module = unique("wrong_argument")
    (site / f"{module}.py").write_text(
        "from tradeloom import hookimpl\n"
        "@hookimpl\ndef tradeloom_pipeline_started(pipe):\n    pass\n"
    )
    manager = PluginManager().load(modules=[module])
    (info,) = [i for i in manager.plugin_list() if i.name == module]
    assert info.error is not None and "\n" not in info.error
    assert info.error.startswith(f"plugin {module!r} is invalid: ")
    assert "tradeloom_pipeline_started(pipe); Argument(s) {'pipe'} are declared" in info.error


def test_the_hook_reference_names_the_api_that_takes_plugins_from_code() -> None:
    # The hookspecs module's docstring opens the hook reference (docs/hooks.md).
    import inspect
    import re

    import tradeloom
    from tradeloom import hookspecs

    named = re.findall(r"``([\w.]+)\((?:\.\.\., )?plugins=\[\.\.\.\]\)``", hookspecs.__doc__ or "")
    assert named == ["tradeloom.backtest"]
    for name in [*named, "tradeloom.run"]:
        function = getattr(tradeloom, name.removeprefix("tradeloom."))
        assert "plugins" in inspect.signature(function).parameters, name
    assert "``tradeloom.run``" in (hookspecs.__doc__ or "")


BUILT_PLUGIN = """
from tradeloom import Strategy, hookimpl
from tradeloom.components import Validator

class Broken(Validator):
    def __init__(self) -> None:
        raise RuntimeError("ctor boom")

    def validate(self, signal, view):
        return None

class Duck:  # no Validator subclass, but it has what a validator must
    name = "duck"

    def validate(self, signal, view):
        return None

class StrategyLike:
    pass

@hookimpl
def tradeloom_register_validators():
    return {
        "broken": Broken,
        "none": lambda: None,
        "wrong": lambda: object(),
        "duck": Duck,
        "missing_file": lambda: open("/nonexistent/limits.toml"),
    }

@hookimpl
def tradeloom_register_strategies():
    return {"not_a_strategy": StrategyLike}
"""


def test_a_factory_that_raises_or_returns_no_component_is_named(site: Path) -> None:
    module = unique("built")
    (site / f"{module}.py").write_text(BUILT_PLUGIN)
    manager = PluginManager().load(modules=[module])
    label = f"validator 'broken' (plugin '{module}')"
    with pytest.raises(ConfigError) as caught:
        manager.create("validator", "broken")
    assert str(caught.value) == f"{label}: RuntimeError: ctor boom"
    assert isinstance(caught.value.__cause__, RuntimeError)  # the CLI shows where it raised
    with pytest.raises(ConfigError, match=r"'missing_file' .*: FileNotFoundError: \[Errno 2\]"):
        manager.create("validator", "missing_file")
    with pytest.raises(ConfigError) as caught:
        manager.create("validator", "none")
    assert str(caught.value) == (
        f"validator 'none' (plugin '{module}'): its factory returned None, not a "
        "tradeloom.components.Validator"
    )
    with pytest.raises(ConfigError) as caught:
        manager.create("validator", "wrong")
    assert "its factory returned <object object at" in str(caught.value)
    assert "(a builtins.object) (it has no validate()), not a tradeloom.components.Validator" in (
        str(caught.value)
    )
    with pytest.raises(ConfigError, match=r"not a tradeloom\.strategy\.Strategy$"):
        manager.create("strategy", "not_a_strategy")
    assert type(manager.create("validator", "duck")).__name__ == "Duck"


def test_a_name_only_type_checkers_see_leaves_the_other_parameters_checked(site: Path) -> None:
    module = unique("checked_hints")
    (site / f"{module}.py").write_text(
        "from __future__ import annotations\n"
        "from decimal import Decimal\n"
        "from typing import TYPE_CHECKING\n"
        "from tradeloom import Strategy, hookimpl\n"
        "if TYPE_CHECKING:\n"
        "    from pathlib import Path\n"
        "class Hinted(Strategy):\n"
        "    def __init__(self, lookback: int = 5, quantity: Decimal = Decimal(1),\n"
        "                 log_dir: Path | None = None) -> None:\n"
        "        self.lookback, self.quantity, self.log_dir = lookback, quantity, log_dir\n"
        "@hookimpl\n"
        "def tradeloom_register_strategies():\n"
        "    return {'hinted': Hinted}\n"
    )
    manager = PluginManager().load(modules=[module])
    with pytest.raises(ConfigError, match="lookback: Input should be a valid integer"):
        manager.create("strategy", "hinted", {"lookback": "abc"})
    with pytest.raises(ConfigError, match=r"quantity: float 0\.1 is not accepted"):
        manager.create("strategy", "hinted", {"quantity": 0.1})
    built = manager.create("strategy", "hinted", {"lookback": 7, "log_dir": "logs"})
    assert (built.lookback, built.log_dir) == (7, "logs")  # the unresolved one: as given


def test_an_entry_point_to_something_without_hooks_is_a_failed_plugin(site: Path) -> None:
    package = unique("hookless_pkg")
    make_distribution(
        site,
        "hookless",
        {package: "def helper():\n    return 1\n"},
        {"hookless": package, "to_function": f"{package}:helper"},
    )
    manager = PluginManager().load()
    infos = {i.name: i for i in manager.plugin_list()}
    assert infos["hookless"].error == (
        f"{package} (module {package}) implements no tradeloom hook: the entry point names "
        "the module that holds the @tradeloom.hookimpl functions (the template's "
        "package.plugin)"
    )
    assert infos["to_function"].error is not None
    assert "implements no tradeloom hook" in infos["to_function"].error
    assert manager.problems()  # a run warns about both


def test_two_distributions_using_one_plugin_name_load_in_a_set_order(site: Path) -> None:
    first, second = unique("zeta_plugin"), unique("alpha_plugin")
    make_distribution(site, "zeta-dist", {first: STRATEGY_PLUGIN % {"name": "z"}}, {"dup": first})
    make_distribution(
        site, "alpha-dist", {second: STRATEGY_PLUGIN % {"name": "a"}}, {"dup": second}
    )
    infos = {i.name: i for i in PluginManager().load().plugin_list()}
    assert infos["dup"].distribution == "alpha-dist"  # by name, not by the order of sys.path
    assert infos["dup (zeta-dist)"].error == (
        "plugin name 'dup' is already used by distribution 'alpha-dist'; this one is not "
        "loaded (uninstall one of the two, or give this entry point another name)"
    )


def test_a_helper_named_like_no_hook_is_the_plugins_own(site: Path) -> None:
    module = unique("helpers")
    (site / f"{module}.py").write_text(
        STRATEGY_PLUGIN % {"name": "helped"} + "\ndef tradeloom_compat_check():\n    return True\n"
    )
    manager = PluginManager().load(modules=[module])
    assert manager.factory("strategy", "helped").plugin == module
    misspelt = unique("misspelt")
    (site / f"{misspelt}.py").write_text("def tradeloom_register_strategy():\n    return {}\n")
    manager = PluginManager().load(modules=[misspelt])
    (info,) = [i for i in manager.plugin_list() if i.name == misspelt]
    assert info.error is not None and info.error.startswith(
        f"plugin {misspelt!r} defines tradeloom_register_strategy (did you mean "
        "tradeloom_register_strategies?) without @hookimpl"
    )


def test_a_plugin_passed_in_whose_registration_fails_raises() -> None:
    from tradeloom import hookimpl
    from tradeloom.errors import PluginError

    class ReturnsAList:
        @hookimpl
        def tradeloom_register_strategies(self) -> object:
            return ["not", "a", "mapping"]

    with pytest.raises(PluginError, match="must return a mapping"):
        PluginManager().load(plugins=[ReturnsAList()]).registrations()
    with pytest.raises(PluginError, match=r"register an instance of the class, not the class"):
        PluginManager().load(plugins=[ReturnsAList]).registrations()


def test_a_number_with_a_fraction_is_refused_where_whole_numbers_are_taken() -> None:
    # TOML numbers arrive as Decimals: 1.5 for a bar_interval (text, seconds or a timedelta)
    # became 1.5-second bars without a word.
    from decimal import Decimal

    manager = PluginManager().load()
    params = {"path": "x.csv", "instrument": "X", "format": "yahoo"}
    with pytest.raises(ConfigError, match=r"bar_interval: 1\.5 is not a whole number"):
        manager.create("feed", "replay", {**params, "bar_interval": Decimal("1.5")})
    with pytest.raises(ConfigError, match=r"fast: 2\.5 is not a whole number"):
        manager.create("strategy", "sma_cross", {"fast": Decimal("2.5")})
    built = manager.create("strategy", "sma_cross", {"fast": Decimal("5"), "slow": Decimal("20")})
    assert (built.fast, built.slow) == (5, 20)
    # Where a Decimal is taken, a fraction is what it is.
    assert manager.create("strategy", "sma_cross", {"quantity": Decimal("2.5")}).quantity == (
        Decimal("2.5")
    )
