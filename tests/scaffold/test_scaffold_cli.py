"""`tradeloom new plugin`: options, prompts and the errors a user can run into."""

from __future__ import annotations

import ast
import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tradeloom.cli import main
from tradeloom.scaffold import KINDS, create_project, template_dir, template_options

try:
    import cookiecutter  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(
        "cookiecutter is not installed (pip install 'tradeloom[scaffold]')",
        allow_module_level=True,
    )


@pytest.fixture(autouse=True)
def cookiecutter_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep cookiecutter's replay files out of the user's home."""
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(f"replay_dir: '{tmp_path / 'replay'}'\n")
    monkeypatch.setenv("COOKIECUTTER_CONFIG", str(config))


def new(tmp_path: Path, *args: str) -> int:
    return main(["new", "plugin", "--no-input", "-o", str(tmp_path / "out"), *args])


def test_template_options_match_the_cli() -> None:
    options = template_options()
    assert options["kind"] == list(KINDS)
    assert {"plugin_name", "project_name", "package_name", "component_name"} <= set(options)
    assert (template_dir() / "hooks" / "pre_gen_project.py").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_valid_python(tmp_path: Path, kind: str) -> None:
    project = create_project(
        output_dir=tmp_path, options={"plugin_name": f"sample {kind}", "kind": kind}
    )
    assert project == tmp_path / f"tradeloom-sample-{kind}"
    package = project / "src" / f"tradeloom_sample_{kind}"
    modules = sorted(p.name for p in package.glob("*.py"))
    assert modules == sorted(["__init__.py", "plugin.py", f"{kind}.py"])
    for path in [*package.glob("*.py"), *(project / "tests").glob("*.py")]:
        ast.parse(path.read_text(), filename=str(path))
    plugin = (package / "plugin.py").read_text()
    hook = {
        "strategy": "strategies",
        "feed": "feeds",
        "executor": "executors",
        "validator": "validators",
        "persistence": "persistence",
    }[kind]
    assert f"def tradeloom_register_{hook}()" in plugin
    assert plugin.count("\n@hookimpl\n") == 1
    class_name = f"Sample{kind.title()}"
    assert f'"sample_{kind}": {class_name}' in plugin
    assert "tradeloom.testing" in (project / "tests" / f"test_{kind}.py").read_text()
    assert len(list((project / "data").iterdir())) == 1
    if shutil.which("ruff") is not None:
        lint = subprocess.run(
            ["ruff", "check", "--no-cache", "."],  # with the project's own ruff settings
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout


def test_options_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = new(
        tmp_path,
        "--option",
        "plugin_name=Mean Revert",
        "--option",
        "author=Ada",
        "--option",
        "version=2.3.4",
        "--kind",
        "strategy",
    )
    assert code == 0
    project = tmp_path / "out" / "tradeloom-mean-revert"
    out = capsys.readouterr().out
    assert f"Created {project}" in out
    assert "tradeloom backtest -c tradeloom.toml" in out
    pyproject = (project / "pyproject.toml").read_text()
    assert 'version = "2.3.4"' in pyproject
    assert '{ name = "Ada" }' in pyproject
    assert 'mean_revert = "tradeloom_mean_revert.plugin"' in pyproject
    assert (
        "class MeanRevertStrategy(Strategy)"
        in (project / "src" / "tradeloom_mean_revert" / "strategy.py").read_text()
    )


def test_unknown_option_lists_the_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new(tmp_path, "--option", "colour=blue") == 2  # a usage error
    err = capsys.readouterr().err
    assert "--option colour: unknown option" in err
    assert "plugin_name" in err and "kind" in err
    assert not (tmp_path / "out").exists()


def test_bad_kind_lists_the_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new(tmp_path, "--option", "kind=broker") == 2
    assert (
        "kind=broker: must be one of strategy, feed, executor, validator" in capsys.readouterr().err
    )


def test_option_without_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new(tmp_path, "--option", "plugin_name") == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_unknown_template_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["new", "project"])
    assert info.value.code == 2
    assert "invalid choice: 'project'" in capsys.readouterr().err


def test_existing_project_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new(tmp_path, "--option", "plugin_name=twice") == 0
    marker = tmp_path / "out" / "tradeloom-twice" / "notes.txt"
    marker.write_text("mine")
    capsys.readouterr()
    assert new(tmp_path, "--option", "plugin_name=twice") == 1
    err = capsys.readouterr().err
    assert err == (
        f'tradeloom: error: "{tmp_path / "out" / "tradeloom-twice"}" directory already exists; '
        "choose another plugin_name or pass --overwrite\n"
    )
    assert new(tmp_path, "--option", "plugin_name=twice", "--overwrite", "--kind", "feed") == 0
    assert (tmp_path / "out" / "tradeloom-twice" / "src" / "tradeloom_twice" / "feed.py").is_file()
    assert marker.read_text() == "mine"


def test_an_output_folder_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["new", "plugin", "--no-input", "-o", str(taken)]) == 1
    assert capsys.readouterr().err == (
        f"tradeloom: error: output folder {taken} cannot be used: it is a file\n"
    )


def test_invalid_names_are_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert new(tmp_path, "--option", "plugin_name=9 lives!") == 1
    err = capfd.readouterr().err
    assert "component_name '9_lives!' must start with a letter" in err
    assert "the template refused the options" in err
    assert not (tmp_path / "out" / "tradeloom-9-lives!").exists()


def test_a_name_taken_by_an_installed_plugin_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert new(tmp_path, "--option", "plugin_name=paper", "--kind", "executor") == 1
    err = capfd.readouterr().err
    assert "a plugin named 'paper' is installed already" in err
    assert "executor 'paper' is registered already by plugin 'paper'" in err
    assert "Traceback" not in err and "ERROR" not in err  # only the reason, once


@pytest.mark.parametrize("plugin_name", ["leaves nothing", "9 lives!"])
def test_nothing_is_left_in_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_name: str
) -> None:
    """cookiecutter writes its rendered hook scripts to temporary files it does not delete;
    `tradeloom new` removes them, whether the template accepted the options or refused them."""
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    expected = 0 if plugin_name == "leaves nothing" else 1
    assert new(tmp_path, "--option", f"plugin_name={plugin_name}") == expected
    assert list(system_temp.iterdir()) == []
    assert tempfile.tempdir == str(system_temp)


def test_other_threads_temporary_files_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    made: list[str] = []
    done = threading.Event()

    def keep_making() -> None:
        while not done.is_set():
            made.append(tempfile.mkdtemp())

    other = threading.Thread(target=keep_making)
    other.start()
    try:
        assert new(tmp_path, "--option", "plugin_name=busy neighbour") == 0
    finally:
        done.set()
        other.join()
    assert made and all(Path(folder).parent == system_temp for folder in made)
    assert all(Path(folder).is_dir() for folder in made)
    assert sorted(path.name for path in system_temp.iterdir()) == sorted(
        Path(folder).name for folder in made
    )


def test_prompting_without_answers_says_to_pass_no_input(tmp_path: Path) -> None:
    env = {**os.environ, "COOKIECUTTER_CONFIG": os.environ["COOKIECUTTER_CONFIG"]}
    done = subprocess.run(
        [sys.executable, "-m", "tradeloom.cli", "new", "plugin", "-o", str(tmp_path)],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "standard input ended while prompting; pass --no-input" in done.stderr
    assert "Traceback" not in done.stderr


def test_prompts_read_answers(tmp_path: Path) -> None:
    answers = "zeta\n3\n\n\n\n\n\n\n\n"
    env = {**os.environ, "COOKIECUTTER_CONFIG": os.environ["COOKIECUTTER_CONFIG"]}
    done = subprocess.run(
        [sys.executable, "-m", "tradeloom.cli", "new", "plugin", "-o", str(tmp_path)],
        input=answers,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "What does the plugin provide?" in done.stdout
    assert (tmp_path / "tradeloom-zeta" / "src" / "tradeloom_zeta" / "executor.py").is_file()


def test_missing_cookiecutter_says_how_to_install(tmp_path: Path) -> None:
    # Run the CLI in a fresh interpreter where importing cookiecutter fails.
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['cookiecutter'] = None; "
        "from tradeloom.cli import main; "
        f"raise SystemExit(main(['new', 'plugin', '--no-input', '-o', {str(out)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "needs the cookiecutter package, which is not installed" in done.stderr
    assert "pip install 'tradeloom[scaffold]'" in done.stderr
    assert not out.exists()


def test_help_lists_new(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "new" in capsys.readouterr().out


def test_template_json_is_valid() -> None:
    data = json.loads((template_dir() / "cookiecutter.json").read_text())
    assert data["_copy_without_render"] == ["data/*"]


def test_tox_of_a_generated_project_can_take_tradeloom_from_a_checkout(tmp_path: Path) -> None:
    # tox installs into environments of its own, from the package index: TRADELOOM_SOURCE
    # names another tradeloom (a checkout, a wheel), installed first; the README says how.
    project = create_project(output_dir=tmp_path, options={"plugin_name": "toxy"})
    tox_ini = configparser.ConfigParser(interpolation=None)
    tox_ini.read(project / "tox.ini")
    assert tox_ini["testenv"]["deps"].strip() == "{env:TRADELOOM_SOURCE:}"
    readme = (project / "README.md").read_text()
    assert 'TRADELOOM_SOURCE="-e ../tradeloom" tox' in readme


def test_tox_reads_tradeloom_source(tmp_path: Path) -> None:
    project = create_project(output_dir=tmp_path, options={"plugin_name": "toxy"})
    checkout = Path(__file__).resolve().parents[2]

    def deps(source: str | None) -> list[str]:
        env = {key: value for key, value in os.environ.items() if key != "TRADELOOM_SOURCE"}
        if source is not None:
            env["TRADELOOM_SOURCE"] = source
        done = subprocess.run(
            [sys.executable, "-m", "tox", "config", "-e", "py311", "-k", "deps"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return [line.rstrip() for line in done.stdout.splitlines() if line.startswith("deps")]

    assert deps(None) == ["deps ="]  # tradeloom comes with the plugin, from the index
    assert deps(f"-e {checkout}") == [f"deps = -e {checkout}"]


def test_the_command_line_page_says_how_the_names_are_derived(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    rows = {
        cells[0].strip(" `"): "|".join(cells[1:])
        for cells in (line.split("|")[1:-1] for line in page.splitlines())
        if cells
    }
    project = create_project(output_dir=tmp_path, options={"plugin_name": "mean_reversion"})
    (package,) = (project / "src").iterdir()
    pyproject = (project / "pyproject.toml").read_text()
    assert f'mean_reversion = "{package.name}.plugin"' in pyproject  # the component's name
    assert f"`{project.name}`" in rows["project_name"]
    assert f"`{package.name}`" in rows["package_name"]
    assert "(`mean_reversion`)" in rows["component_name"]
