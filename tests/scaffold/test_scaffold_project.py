"""`tradeloom new plugin` end to end: generate each kind of plugin from the template, install it
next to tradeloom (in a throw-away virtual environment that sees the current one), run the
project's own tests, and check that `tradeloom plugins` lists it and a backtest uses it."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

try:
    import cookiecutter  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(
        "cookiecutter is not installed (pip install 'tradeloom[scaffold]')",
        allow_module_level=True,
    )

TIMEOUT = 300


@dataclass(frozen=True)
class Kind:
    kind: str
    plugin_name: str
    component: str
    distribution: str
    package: str


KINDS = {
    "strategy": Kind(
        "strategy", "breakout", "breakout", "tradeloom-breakout", "tradeloom_breakout"
    ),
    "feed": Kind("feed", "tick file", "tick_file", "tradeloom-tick-file", "tradeloom_tick_file"),
    "executor": Kind("executor", "spread", "spread", "tradeloom-spread", "tradeloom_spread"),
    "validator": Kind(
        "validator", "cash share", "cash_share", "tradeloom-cash-share", "tradeloom_cash_share"
    ),
    "persistence": Kind(
        "persistence", "json files", "json_files", "tradeloom-json-files", "tradeloom_json_files"
    ),
}
REGISTER_KIND = {
    "strategy": "strategy",
    "feed": "feed",
    "executor": "executor",
    "validator": "validator",
    "persistence": "persistence",
}


def clean_env(tmp: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRADELOOM_", "PYTEST_", "COV_")) and key != "PYTHONPATH"
    }
    # cookiecutter keeps replay files in the user's home; keep them in the test's folder.
    config = tmp / "cookiecutter.yaml"
    if not config.exists():
        config.write_text(
            f"replay_dir: '{tmp / 'replay'}'\ncookiecutters_dir: '{tmp / 'cookiecutters'}'\n"
        )
    env["COOKIECUTTER_CONFIG"] = str(config)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    args: list[str], *, cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {done.returncode}\n--- stdout\n{done.stdout}\n"
            f"--- stderr\n{done.stderr}"
        )
    return done


def tradeloom_cli(python: Path | str, *args: str) -> list[str]:
    return [str(python), "-m", "tradeloom.cli", *args]


class PluginVenv:
    """A virtual environment without pip of its own that sees the current environment's
    packages (tradeloom, pytest, pip, hatchling), so installing a plugin into it needs no
    network and leaves the current environment untouched.

    ``venv --system-site-packages`` only reaches the *base* interpreter's packages, not those
    of the virtual environment the tests run in, so a ``.pth`` file adds this environment's
    site-packages (with their own ``.pth`` files, which the editable tradeloom relies on)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        venv.EnvBuilder(with_pip=False, system_site_packages=True).create(root)
        self.python = root / ("Scripts" if os.name == "nt" else "bin") / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        parents = [*site.getsitepackages(), site.getusersitepackages()]
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
        (Path(purelib) / "_tradeloom_parent_env.pth").write_text(lines)
        self.purelib = Path(purelib)

    def install(self, project: Path, env: dict[str, str]) -> None:
        args = [str(self.python), "-m", "pip", "install", "-q", "--no-deps", str(project)]
        try:
            import hatchling  # noqa: F401
        except ImportError:
            pass  # pip fetches the build backend into an isolated build environment
        else:
            args.insert(-1, "--no-build-isolation")
        run(args, cwd=project.parent, env=env)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scaffold")


@pytest.fixture(scope="module")
def plugin_venv(workdir: Path) -> Iterator[PluginVenv]:
    environment = PluginVenv(workdir / "venv")
    yield environment
    shutil.rmtree(environment.root, ignore_errors=True)


@pytest.fixture(scope="module")
def projects(workdir: Path, plugin_venv: PluginVenv) -> dict[str, Path]:
    """One generated and installed project of each kind (generated with the CLI)."""
    env = clean_env(workdir)
    out = workdir / "projects"
    created: dict[str, Path] = {}
    for spec in KINDS.values():
        done = run(
            tradeloom_cli(
                sys.executable,
                "new",
                "plugin",
                "--no-input",
                "-o",
                str(out),
                "--option",
                f"plugin_name={spec.plugin_name}",
                "--kind",
                spec.kind,
            ),
            cwd=workdir,
            env=env,
        )
        project = out / spec.distribution
        assert f"Created {project}" in done.stdout
        plugin_venv.install(project, env)
        created[spec.kind] = project
    return created


# --------------------------------------------------------------------------------------------
# The generated projects


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_layout(projects: dict[str, Path], kind: str) -> None:
    spec = KINDS[kind]
    project = projects[kind]
    files = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    package = f"src/{spec.package}"
    expected = {
        "pyproject.toml",
        "README.md",
        "tox.ini",
        "tradeloom.toml",
        f"{package}/__init__.py",
        f"{package}/plugin.py",
        f"{package}/{kind}.py",
        f"{package}/py.typed",
        f"tests/test_{kind}.py",
    }
    assert expected <= files
    others = {k for k in KINDS if k != kind}
    assert not any(f"{package}/{other}.py" in files for other in others)
    pyproject = (project / "pyproject.toml").read_text()
    assert "[project.entry-points.tradeloom]" in pyproject
    assert f'{spec.component} = "{spec.package}.plugin"' in pyproject
    for path in project.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".toml", ".md", ".ini", ".cfg"}:
            text = path.read_text()
            assert "{{" not in text and "{%" not in text, f"unrendered template in {path}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_project_tests_pass(
    projects: dict[str, Path], plugin_venv: PluginVenv, workdir: Path, kind: str
) -> None:
    project = projects[kind]
    done = run(
        [str(plugin_venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=clean_env(workdir),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    if kind in {"feed", "executor", "persistence"}:
        assert (
            "Conformance"
            in run(
                [str(plugin_venv.python), "-m", "pytest", "--collect-only", "-q"],
                cwd=project,
                env=clean_env(workdir),
            ).stdout
        )


def plugin_listing(plugin_venv: PluginVenv, workdir: Path) -> dict[str, Any]:
    done = run(
        tradeloom_cli(plugin_venv.python, "plugins", "--json"),
        cwd=workdir,
        env=clean_env(workdir),
        check=False,
    )
    listing: dict[str, Any] = json.loads(done.stdout)
    return {plugin["name"]: plugin for plugin in listing["plugins"]}


def test_tradeloom_plugins_lists_them(
    plugin_venv: PluginVenv, workdir: Path, projects: Any
) -> None:
    plugins = plugin_listing(plugin_venv, workdir)
    for spec in KINDS.values():
        assert spec.component in plugins, sorted(plugins)
        info = plugins[spec.component]
        assert info["distribution"] == spec.distribution
        assert info["version"] == "0.1.0"
        assert info["status"] == "loaded", info
        assert info["registers"] == {REGISTER_KIND[spec.kind]: [spec.component]}
    # The stock plugins are still there beside them.
    assert plugins["paper"]["distribution"] == "tradeloom"

    text = run(
        tradeloom_cli(plugin_venv.python, "plugins"), cwd=workdir, env=clean_env(workdir)
    ).stdout
    assert any(
        line.startswith("breakout") and "tradeloom-breakout 0.1.0" in line
        for line in text.splitlines()
    )


def test_the_current_environment_is_untouched(projects: Any) -> None:
    import importlib_metadata

    names = {ep.name for ep in importlib_metadata.entry_points(group="tradeloom")}
    assert not names & {spec.component for spec in KINDS.values()}


def backtest(plugin_venv: PluginVenv, project: Path, workdir: Path) -> dict[str, Any]:
    out = project / "out"
    done = run(
        tradeloom_cli(
            plugin_venv.python,
            "backtest",
            "-c",
            "tradeloom.toml",
            "--out",
            str(out),
            "--no-progress",
        ),
        cwd=project,
        env=clean_env(workdir),
    )
    assert "Backtest of tradeloom.toml" in done.stdout
    assert (out / "equity.png").is_file()
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def test_backtest_uses_the_strategy(
    plugin_venv: PluginVenv, projects: dict[str, Path], workdir: Path
) -> None:
    result = backtest(plugin_venv, projects["strategy"], workdir)
    fills = result["fills"]
    assert fills, "the generated strategy did not trade on the sample data"
    # A strategy's id defaults to its configured name: the fills are the plugin's.
    assert {fill["strategy_id"] for fill in fills} == {"breakout"}
    assert fills[0]["side"] == "buy"
    assert result["summary"]["market_events"] == 120
    assert "breakout" in result["portfolios"]


def test_backtest_uses_the_feed(
    plugin_venv: PluginVenv, projects: dict[str, Path], workdir: Path
) -> None:
    result = backtest(plugin_venv, projects["feed"], workdir)
    sample = (projects["feed"] / "data" / "sample.jsonl").read_text().splitlines()
    assert result["summary"]["market_events"] == len(sample) == 150
    assert result["summary"]["first_event_time"] == "2024-03-04T14:30:00+00:00"
    assert result["fills"], "sma_cross did not trade on the generated feed's data"
    assert {fill["instrument"] for fill in result["fills"]} == {"ACME"}


def test_backtest_uses_the_executor(
    plugin_venv: PluginVenv, projects: dict[str, Path], workdir: Path
) -> None:
    result = backtest(plugin_venv, projects["executor"], workdir)
    fills = result["fills"]
    assert fills
    # tradeloom.toml sets commission_per_unit = 0.01 and quantity 10: the paper trader would
    # charge nothing without commission_bps.
    assert {Decimal(fill["commission"]) for fill in fills} == {Decimal("0.10")}
    assert result["summary"]["rejections"] == 0


def test_backtest_uses_the_validator(
    plugin_venv: PluginVenv, projects: dict[str, Path], workdir: Path
) -> None:
    result = backtest(plugin_venv, projects["validator"], workdir)
    # sma_cross buys 200 at about 100 with 100,000 of cash: more than 0.1 of it, so the
    # generated validator refuses every buy, by its own name.
    rejections = result["rejections"]
    assert rejections and not result["fills"]
    assert {rejection["validator"] for rejection in rejections} == {"cash_share"}
    assert all("of the cash" in rejection["reason"] for rejection in rejections)


def test_backtest_uses_the_persistence(
    plugin_venv: PluginVenv, projects: dict[str, Path], workdir: Path
) -> None:
    project = projects["persistence"]
    result = backtest(plugin_venv, project, workdir)
    fills = result["fills"]
    assert fills, "sma_cross did not trade on the sample data"
    # The journal and the final snapshot are in the folder tradeloom.toml names.
    journal = (project / "state" / "fills.jsonl").read_text().splitlines()
    journaled = [json.loads(json.loads(line)["fill"]) for line in journal]
    assert [fill["event_id"] for fill in journaled] == [fill["event_id"] for fill in fills]
    snapshots = json.loads((project / "state" / "snapshots.json").read_text())
    assert snapshots["sma_cross"]["equity"] == result["portfolios"]["sma_cross"]["equity"]

    # Its state is kept: the same backtest again is refused unless it resumes.
    again = run(
        tradeloom_cli(plugin_venv.python, "backtest", "-c", "tradeloom.toml", "--no-progress"),
        cwd=project,
        env=clean_env(workdir),
        check=False,
    )
    assert again.returncode != 0
    assert "--resume" in again.stderr


def test_a_project_generated_again_over_its_installed_self(
    plugin_venv: PluginVenv, projects: dict[str, Path], workdir: Path
) -> None:
    spec = KINDS["strategy"]
    args = ["new", "plugin", "--no-input", "-o", str(projects["strategy"].parent)]
    args += ["--option", f"plugin_name={spec.plugin_name}", "--kind", spec.kind, "--overwrite"]
    done = run(tradeloom_cli(plugin_venv.python, *args), cwd=workdir, env=clean_env(workdir))
    assert f"Created {projects['strategy']}" in done.stdout
