"""``tradeloom new plugin``: a new plugin package from the bundled cookiecutter template.

Registered through :func:`tradeloom.hookspecs.tradeloom_add_commands`, like every command.
The template is a strategy, feed, executor, validator or persistence plugin (the ``kind``
option) with a ``pyproject.toml`` declaring the ``tradeloom`` entry point, a ``src/`` layout,
tests built on :mod:`tradeloom.testing`, a ``tox.ini``, a README and a ready-to-run
``tradeloom.toml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from tradeloom import hookimpl
from tradeloom.errors import TradeloomError

TEMPLATES = ("plugin",)
KINDS = ("strategy", "feed", "executor", "validator", "persistence")
INSTALL_HINT = "pip install 'tradeloom[scaffold]'  (or: pip install cookiecutter)"


class ScaffoldError(TradeloomError):
    """The template could not be rendered with the options given."""


@hookimpl(tryfirst=True)  # a built-in command: added before any plugin's
def tradeloom_add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    new = subparsers.add_parser(
        "new",
        help="create a new plugin package from the template",
        description="Creates a plugin package (pyproject with the tradeloom entry point, src "
        "layout, an example strategy, feed, executor, validator or persistence back end, tests, "
        "tox.ini, README) with "
        "cookiecutter. Prompts for each option unless --no-input is given.",
        epilog="example: tradeloom new plugin --no-input -o . --option plugin_name=momentum "
        "--option kind=strategy",
    )
    new.add_argument("template", choices=TEMPLATES, help="what to create")
    new.add_argument(
        "--no-input", action="store_true", help="do not prompt; use defaults and --option values"
    )
    new.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a template option (repeatable), e.g. plugin_name=momentum kind=feed",
    )
    new.add_argument("--kind", choices=KINDS, help="shorthand for --option kind=KIND")
    new.add_argument(
        "-o", "--output-dir", default=".", help="folder to create the project in (default: .)"
    )
    new.add_argument(
        "--overwrite", action="store_true", help="write into an existing project folder"
    )
    new.set_defaults(func=cmd_new)


def template_dir() -> Path:
    """The cookiecutter template: packaged as ``tradeloom/_template`` in a wheel, or the
    repository's ``cookiecutter/`` folder in a source checkout."""
    packaged = Path(str(resources.files("tradeloom"))) / "_template"
    if (packaged / "cookiecutter.json").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "cookiecutter"
    if (checkout / "cookiecutter.json").is_file():
        return checkout
    raise ScaffoldError(
        f"the plugin template is missing (looked in {packaged} and {checkout}); reinstall tradeloom"
    )


def template_options(template: Path | None = None) -> dict[str, Any]:
    """The template's options and their defaults (``cookiecutter.json``), private ones
    (starting with ``_``) left out."""
    path = (template or template_dir()) / "cookiecutter.json"
    options: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return {key: value for key, value in options.items() if not key.startswith("_")}


def parse_options(pairs: Sequence[str], known: dict[str, Any]) -> dict[str, str]:
    """``KEY=VALUE`` strings to a dict; unknown keys and bad choices are errors that list
    what is accepted."""
    chosen: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScaffoldError(f"--option {pair!r}: expected KEY=VALUE")
        if key not in known:
            raise ScaffoldError(
                f"--option {key}: unknown option; the template's options are: " + ", ".join(known)
            )
        choices = known[key]
        if isinstance(choices, list) and value not in choices:
            raise ScaffoldError(
                f"--option {key}={value}: must be one of {', '.join(map(str, choices))}"
            )
        chosen[key] = value
    return chosen


def create_project(
    *,
    output_dir: str | Path = ".",
    options: dict[str, str] | None = None,
    no_input: bool = True,
    overwrite: bool = False,
) -> Path:
    """Render the plugin template into ``output_dir``; return the new project's folder."""
    try:
        from cookiecutter.exceptions import (
            CookiecutterException,
            FailedHookException,
            OutputDirExistsException,
        )
        from cookiecutter.main import cookiecutter
    except ImportError:
        raise ScaffoldError(
            f"`tradeloom new` needs the cookiecutter package, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    template = template_dir()
    known = template_options(template)
    extra = dict(options or {})
    parse_options([f"{key}={value}" for key, value in extra.items()], known)
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file" if out.is_file() else (exc.strerror or str(exc))
        raise ScaffoldError(f"output folder {out} cannot be used: {reason}") from None
    # The template's hook prints why it refuses options; cookiecutter would add an ERROR log
    # with its own traceback.
    hooks_log = logging.getLogger("cookiecutter.hooks")
    hooks_level = hooks_log.level
    hooks_log.setLevel(logging.CRITICAL)
    try:
        with _scripts_in_a_private_temp_dir():
            created = cookiecutter(
                str(template),
                no_input=no_input,
                extra_context=extra,
                output_dir=str(out),
                overwrite_if_exists=overwrite,
            )
    except EOFError:
        raise ScaffoldError(
            "standard input ended while prompting; pass --no-input and set the options with "
            "--option KEY=VALUE"
        ) from None
    except OutputDirExistsException as exc:
        found = str(exc).removeprefix("Error: ")  # cookiecutter's own prefix: said once
        raise ScaffoldError(f"{found}; choose another plugin_name or pass --overwrite") from None
    except FailedHookException:
        # The hook printed why (a name that is invalid or already taken).
        raise ScaffoldError("the template refused the options (see the message above)") from None
    except CookiecutterException as exc:
        raise ScaffoldError(f"cookiecutter: {type(exc).__name__}: {exc}") from None
    finally:
        hooks_log.setLevel(hooks_level)
    return Path(created)


@contextmanager
def _scripts_in_a_private_temp_dir() -> Iterator[None]:
    """Have cookiecutter write its rendered hook scripts into a folder of our own, removed
    afterwards.

    cookiecutter writes each hook script to a temporary file it never deletes
    (``NamedTemporaryFile(delete=False)``), which left two files in the system's temporary
    folder per project created. Only its hooks module is pointed elsewhere: other code (other
    threads) using ``tempfile`` meanwhile is not affected."""
    import cookiecutter.hooks as hooks

    if getattr(hooks, "tempfile", None) is not tempfile:  # a cookiecutter that works otherwise
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tradeloom-new-") as private:
        setattr(hooks, "tempfile", _TempfileIn(private))  # noqa: B010 - not in its stubs
        try:
            yield
        finally:
            setattr(hooks, "tempfile", tempfile)  # noqa: B010


class _TempfileIn:
    """The ``tempfile`` module, with ``NamedTemporaryFile`` creating its files in ``folder``."""

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def NamedTemporaryFile(self, *args: Any, **kwargs: Any) -> Any:  # named as tempfile names it
        kwargs.setdefault("dir", self._folder)
        return tempfile.NamedTemporaryFile(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(tempfile, name)


def cmd_new(args: argparse.Namespace) -> int:
    pairs = list(args.option)
    if args.kind:
        pairs.append(f"kind={args.kind}")
    try:
        known = template_options()
    except (OSError, ValueError) as exc:
        raise ScaffoldError(f"cannot read the plugin template: {exc}") from None
    try:
        options = parse_options(pairs, known)
    except ScaffoldError as exc:  # a bad command-line option: a usage error
        print(f"tradeloom: error: {exc}", file=sys.stderr)
        return 2
    project = create_project(
        output_dir=args.output_dir,
        options=options,
        no_input=args.no_input,
        overwrite=args.overwrite,
    )
    print(f"Created {project}")
    print("Next:")
    print(f"  cd {project}")
    print('  pip install -e ".[test]"')
    print("  pytest")
    print("  tradeloom plugins")
    print("  tradeloom backtest -c tradeloom.toml --out out")
    return 0
