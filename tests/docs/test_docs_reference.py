"""The reference pages cover the code: every hook, every settings key (with its default) and
every command-line option is documented; and the site builds with `mkdocs build --strict`."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tradeloom import hookspecs
from tradeloom.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def hook_names() -> list[str]:
    names = [
        name
        for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("tradeloom_") and hasattr(value, "tradeloom_spec")
    ]
    assert len(names) >= 10, names  # the specs are found by pluggy's marker
    return names


# --------------------------------------------------------------------------------------------
# The site


def docs_toolchain_missing() -> str | None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with `mkdocs build --strict` (any warning fails the build)."""
    missing = docs_toolchain_missing()
    if missing is not None:
        message = f"{missing} is not installed (pip install 'tradeloom[docs]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(MKDOCS_YML),
            "-d",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    for name in ("getting-started", "concepts", "configuration", "cli", "hooks"):
        assert (site / name / "index.html").is_file(), name


def nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return []


def test_nav_lists_existing_pages_and_every_guide() -> None:
    config = yaml.safe_load(MKDOCS_YML.read_text())
    pages = nav_pages(config["nav"])
    missing = [name for name in pages if not (DOCS / name).is_file()]
    assert not missing, f"mkdocs.yml nav names pages that do not exist: {missing}"
    assert len(pages) == len(set(pages)), "a page is in the nav twice"
    required = {
        "index.md",
        "getting-started.md",
        "concepts.md",
        "configuration.md",
        "cli.md",
        "hooks.md",
        *(f"writing-{kind}.md" for kind in ("strategy", "feed", "executor", "validator")),
        "writing-persistence.md",
        "writing-transport.md",
    }
    assert required <= set(pages)


def transport_members_not_described(text: str) -> list[str]:
    """The public methods and attributes of the Transport ABC that the transport guide's prose
    never names (the rendered reference below it does not count)."""
    from tradeloom.runtime.transport import Transport

    prose = re.sub(r"```.*?```", "", text.split("## Reference", 1)[0], flags=re.S)
    named = {word for span in re.findall(r"`([^`]+)`", prose) for word in re.findall(r"\w+", span)}
    return [name for name in vars(Transport) if not name.startswith("_") and name not in named]


def test_the_transport_guide_describes_every_member_of_the_transport_class() -> None:
    assert transport_members_not_described(page("writing-transport.md")) == []


def test_the_transport_guide_check_catches_a_member_left_out() -> None:
    text = re.sub(r"`[^`]*\bflush\b[^`]*`", "flushing", page("writing-transport.md"))
    assert transport_members_not_described(text) == ["flush"]


# --------------------------------------------------------------------------------------------
# Hooks


def test_hook_page_renders_the_hookspecs_module_unfiltered() -> None:
    text = page("hooks.md")
    directive = re.search(r"^::: tradeloom\.hookspecs\s*$((?:\n[ ]{4}.*)*)", text, re.M)
    assert directive, "hooks.md must render `::: tradeloom.hookspecs` with mkdocstrings"
    options = directive.group(1)
    assert "members:" not in options, "a members list would leave new hooks out"
    for pattern in re.findall(r'"([^"]+)"', options.split("filters:", 1)[-1]):
        for name in hook_names():
            assert re.search(pattern, name), f"filter {pattern!r} hides {name}"


def hooks_missing_from_overview(text: str) -> list[str]:
    return [hook for hook in hook_names() if f"| `{hook}` |" not in text]


def test_every_hook_is_in_the_overview() -> None:
    missing = hooks_missing_from_overview(page("hooks.md"))
    assert not missing, f"hooks missing from the overview table in hooks.md: {missing}"


def test_the_overview_check_catches_a_missing_hook() -> None:
    text = page("hooks.md").replace("| `tradeloom_register_feeds` |", "| feeds |")
    assert hooks_missing_from_overview(text) == ["tradeloom_register_feeds"]


def test_every_hook_is_rendered(site: Path) -> None:
    html = (site / "hooks" / "index.html").read_text(encoding="utf-8")
    rendered = set(re.findall(r'id="tradeloom\.hookspecs\.(tradeloom_\w+)"', html))
    missing = sorted(set(hook_names()) - rendered)
    assert not missing, f"hooks missing from the rendered reference: {missing}"
    for hook in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
        first_line = doc.splitlines()[0]
        assert first_line and first_line.split("``")[0][:30] in html, hook
    # The reStructuredText of the docstrings was converted, not shown raw.
    assert ".. code-block::" not in html
    assert ":class:`" not in html


# --------------------------------------------------------------------------------------------
# Configuration


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union) or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            model = section_model(arg)
            if model is not None:
                return model
    return None


NO_DEFAULT = object()


def settings_keys() -> list[tuple[str, str, Any]]:
    """(section, key, default) for every key of every settings section, nested ones as
    ``health.checks``. The default is the value a configuration without the key gets
    (``NO_DEFAULT`` when the key is required, ``...`` when the default is built by a
    factory)."""
    keys: list[tuple[str, str, Any]] = []

    def default_of(field: FieldInfo) -> Any:
        if field.default_factory is not None:
            return ...
        return NO_DEFAULT if field.default is PydanticUndefined else field.default

    def walk(section: str, model: type[BaseModel], instance: BaseModel | None) -> None:
        for name, field in model.model_fields.items():
            # A section built by default (e.g. [executor] name = "paper") sets the key's default.
            default = getattr(instance, name) if instance is not None else default_of(field)
            keys.append((section, name, default))
            nested = section_model(field.annotation)
            if nested is not None:
                walk(f"{section}.{name}", nested, None)

    for name, field in Settings.model_fields.items():
        model = section_model(field.annotation)
        if model is None:
            keys.append((name, "", ...))  # a free-form table such as [transport]
            continue
        instance = field.default_factory() if field.default_factory is not None else None  # type: ignore[call-arg]
        walk(name, model, instance if isinstance(instance, BaseModel) else None)
    return keys


def section_text(text: str, section: str) -> str | None:
    """The part of the page from the heading of ``[section]`` (or ``[[section]]``) to the
    next heading of the same or a higher level."""
    pattern = re.compile(rf"^(#+) `\[\[?{re.escape(section)}\]?\]`\s*$", re.M)
    match = pattern.search(text)
    if match is None:
        return None
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def table_row(text: str, key: str) -> list[str] | None:
    for line in text.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [cell.strip() for cell in line.strip().strip("|").split("|")]
    return None


def documented_default_matches(cell: str, default: Any) -> bool:
    value = cell.strip("`").strip()
    if default is None:
        return value.startswith("unset")
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, str):
        return value == f'"{default}"'
    if isinstance(default, int | float | Decimal):
        try:
            return Decimal(value.strip('"')) == Decimal(str(default))
        except InvalidOperation:
            return False
    return True  # lists, tables and objects are described in words


def settings_doc_problems(text: str) -> list[str]:
    """What configuration.md (given as ``text``) lacks or gets wrong about the settings."""
    problems = []
    for section, key, default in settings_keys():
        body = section_text(text, section)
        if body is None:
            problems.append(f"configuration.md has no heading for [{section}]")
            continue
        if not key:
            continue  # the section heading is all a free-form table has
        row = table_row(body, key)
        if row is None:
            problems.append(f"[{section}] has no row for `{key}`")
        elif len(row) != 4:
            problems.append(f"[{section}] `{key}`: expected | key | type | default | description |")
        elif default is NO_DEFAULT and row[2] != "required":
            problems.append(f"[{section}] `{key}` is required; the page says {row[2]}")
        elif default not in (NO_DEFAULT, ...) and not documented_default_matches(row[2], default):
            problems.append(f"[{section}] `{key}`: documented default {row[2]}, code: {default!r}")
    return problems


def test_every_settings_key_is_documented() -> None:
    problems = settings_doc_problems(page("configuration.md"))
    assert not problems, "configuration.md:\n" + "\n".join(sorted(set(problems)))


def test_the_settings_check_catches_omissions() -> None:
    text = page("configuration.md")
    without_jitter = "\n".join(
        line for line in text.splitlines() if not line.startswith("| `jitter` |")
    )
    assert settings_doc_problems(without_jitter) == ["[reconnect] has no row for `jitter`"]
    wrong_default = text.replace(
        "| `max_attempts` | integer ≥ 0 | `10` |", "| `max_attempts` | integer ≥ 0 | `3` |"
    )
    assert settings_doc_problems(wrong_default) == [
        "[reconnect] `max_attempts`: documented default `3`, code: 10"
    ]
    no_section = text.replace("## `[monitoring]`", "## Monitoring")
    assert "configuration.md has no heading for [monitoring]" in settings_doc_problems(no_section)


def test_settings_walk_finds_nested_sections() -> None:
    found = {(section, key) for section, key, _ in settings_keys()}
    assert ("reconnect", "max_attempts") in found
    assert ("health.checks", "name") in found
    assert ("strategies", "instruments") in found
    assert ("transport", "") in found


def test_default_check_catches_a_wrong_default() -> None:
    assert documented_default_matches("`10`", 10)
    assert not documented_default_matches("`11`", 10)
    assert documented_default_matches("`0.5`", 0.5)
    assert documented_default_matches('`"memory"`', "memory")
    assert not documented_default_matches('`"paper"`', "memory")
    assert documented_default_matches("`true`", True)


# --------------------------------------------------------------------------------------------
# Command line


def stock_parser() -> argparse.ArgumentParser:
    """The command line with the built-in commands and those of tradeloom's own plugins
    (third-party plugins installed beside it are left out)."""
    import importlib_metadata

    from tradeloom import commands, scaffold
    from tradeloom.cli import build_parser
    from tradeloom.plugins import ENTRY_POINT_GROUP, PluginManager

    stock = [
        ep.name
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == "tradeloom"
    ]
    manager = PluginManager()
    manager.register(commands, name="tradeloom.commands")
    manager.register(scaffold, name="tradeloom.scaffold")
    manager.load(autoload=False, enable=stock)
    return build_parser(manager)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options_of(parser: argparse.ArgumentParser) -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            found.extend(action.option_strings)
        elif not isinstance(action, argparse._SubParsersAction):
            found.append(action.dest.upper() if action.dest != "template" else "plugin")
    return found


def cli_section(name: str) -> str:
    text = page("cli.md")
    match = re.search(rf"^## `tradeloom {name}`\s*$", text, re.M)
    assert match, f"cli.md has no section `## \\`tradeloom {name}\\``"
    rest = text[match.end() :]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest


@pytest.mark.parametrize("command", sorted(subcommands(stock_parser())))
def test_every_command_and_option_is_documented(command: str) -> None:
    body = cli_section(command)
    sub = subcommands(stock_parser())[command]
    for option in options_of(sub):
        assert f"`{option}" in body, f"cli.md: `tradeloom {command}` does not document {option}"


def test_global_options_are_documented() -> None:
    text = page("cli.md")
    body = text[text.index("## Global options") : text.index("## `tradeloom ")]
    for option in options_of(stock_parser()):
        assert f"`{option}" in body, f"cli.md: global option {option} is not documented"


def test_cli_check_sees_the_stock_commands() -> None:
    names = set(subcommands(stock_parser()))
    assert {"demo", "backtest", "run", "plugins", "new"} <= names
