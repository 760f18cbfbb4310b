"""The ``tradeloom`` command line. Sub-commands come from plugins through
``tradeloom_add_commands``; the built-in ones are registered the same way."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import platform
import re
import select
import sys
import sysconfig
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
import importlib_metadata
import pluggy
import pydantic
import pydantic_core
from pydantic import ValidationError

import tradeloom
from tradeloom.console import say, say_traceback
from tradeloom.errors import ConfigError, TradeloomError
from tradeloom.plugins import ENTRY_POINT_GROUP, PluginManager
from tradeloom.settings import PluginSettings, build_settings, read_toml

USAGE_ERROR_STATUS = 2


class CommandLineParser(argparse.ArgumentParser):
    """argparse's parser, except that a usage error exits with the status its command asks
    for: ``parser.set_defaults(usage_error_status=3)`` on a command's parser (a monitoring
    check's usage error is Nagios' "unknown", 3, not "critical", 2). Others exit with 2."""

    commands: Mapping[str, argparse.ArgumentParser]  # the sub-commands' parsers, by name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = {}

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        status = self.get_default("usage_error_status") or USAGE_ERROR_STATUS
        self.exit(status, f"{self.prog}: error: {message}\n")


def parse_command_line(parser: CommandLineParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that arguments nobody recognised are reported by
    the command they were given to (argparse finds them only at the top), with its usage line
    and its usage-error status."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = parser.commands.get(getattr(args, "command", None) or "", parser)
        command.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def build_parser(manager: PluginManager) -> CommandLineParser:
    parser = CommandLineParser(
        prog="tradeloom",
        description="Event-driven trading pipelines built from plugins.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"tradeloom {_installed_version()} (Python {platform.python_version()})",
    )
    parser.add_argument(
        "-p",
        dest="plugin_options",
        action="append",
        default=[],
        metavar="NAME",
        help="block a plugin with -p no:NAME, or load module NAME as a plugin",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_commands(manager, subparsers)
    parser.commands = subparsers.choices
    return parser


def _add_commands(manager: PluginManager, subparsers: Any) -> None:
    """Each plugin's commands, in pluggy's order (the built-in ones are ``tryfirst``). A
    plugin that fails, say by adding a command that exists, loses its commands (those it
    added before it failed too) with a warning; it cannot take the command line down."""
    hook = manager.hook.tradeloom_add_commands
    for impl in reversed(hook.get_hookimpls()):  # the order pluggy calls them in
        before = _commands_of(subparsers)
        try:
            impl.function(*({"subparsers": subparsers}[arg] for arg in impl.argnames))
        except Exception as exc:
            _restore_commands(subparsers, before)
            print(
                f"tradeloom: warning: plugin {impl.plugin_name!r} failed in "
                f"tradeloom_add_commands, so its commands are missing: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )


def _commands_of(subparsers: Any) -> tuple[dict[str, Any], list[Any], set[str]]:
    """What ``subparsers`` holds: the parsers by name (aliases too), the help entries
    (argparse keeps them apart, in ``_choices_actions``) and, from Python 3.13, the names
    added as deprecated."""
    deprecated: set[str] = getattr(subparsers, "_deprecated", set())
    return dict(subparsers.choices), list(subparsers._choices_actions), set(deprecated)


def _restore_commands(
    subparsers: Any, commands: tuple[dict[str, Any], list[Any], set[str]]
) -> None:
    """Put ``subparsers`` back as :func:`_commands_of` found it, in place (its ``choices`` is
    the map argparse parses with)."""
    parsers, helps, deprecated = commands
    subparsers.choices.clear()
    subparsers.choices.update(parsers)
    subparsers._choices_actions[:] = helps
    if isinstance(getattr(subparsers, "_deprecated", None), set):
        subparsers._deprecated.clear()
        subparsers._deprecated.update(deprecated)


def _installed_version() -> str:
    """The installed distribution's version (``tradeloom.__version__`` in a bare checkout)."""
    try:
        return importlib.metadata.version("tradeloom")
    except importlib.metadata.PackageNotFoundError:
        return tradeloom.__version__


_GROUPED_P = re.compile(r"-([vh]+)p(.*)", re.DOTALL)


def _split_grouped_p(argv: Sequence[str]) -> list[str]:
    """``-vp NAME`` (short flags grouped, as argparse takes them) as ``-v -p NAME``: the ``-p``
    options are read before argparse runs."""
    args: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            return args + list(argv[index:])
        grouped = _GROUPED_P.fullmatch(arg)
        if grouped is None:
            args.append(arg)
        else:
            args += [f"-{grouped.group(1)}", f"-p{grouped.group(2)}"]
    return args


def _plugin_options_first(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``-p`` option moved before the command: they are global options
    (read before plugins load), and ``tradeloom backtest -c x.toml -p my_strategies`` is
    what people type."""
    options: list[str] = []
    rest: list[str] = []
    args = _split_grouped_p(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":  # what follows is not options
            rest += args[index:]
            break
        if arg == "-p" and index + 1 < len(args):
            options += args[index : index + 2]
            index += 2
            continue
        if arg.startswith("-p") and len(arg) > 2:
            options.append(arg)
        else:
            rest.append(arg)
        index += 1
    return options + rest


def _early_plugin_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``-p no:NAME`` and ``-p MODULE`` must be known before plugins load (they add commands)."""
    blocked: list[str] = []
    modules: list[str] = []
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--":
            break
        value = None
        if arg == "-p" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("-p") and len(arg) > 2:
            value = arg[2:]
        if value is None:
            continue
        if value.startswith("no:"):
            blocked.append(value[3:])
        else:
            modules.append(value)
    return blocked, modules


def _configured_plugins(argv: Sequence[str]) -> PluginSettings | None:
    """The ``[plugins]`` section of the configuration file the command is given, with its
    environment variables (``TRADELOOM_PLUGINS__...``), read before plugins load: a plugin it
    blocks, or leaves out with autoload off, is never imported, also not to add commands.
    None when it cannot be read (the command reports the configuration's errors itself)."""
    path = _config_argument(argv)
    try:
        plugins = read_toml(path).get("plugins", {}) if path is not None else {}
    except ConfigError:
        return None
    try:
        return build_settings({"plugins": plugins}).plugins
    except ConfigError:  # an environment variable of another section, say: the file alone
        try:
            return PluginSettings.model_validate(plugins)
        except ValidationError:
            return None


def _config_argument(argv: Sequence[str]) -> str | None:
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--":
            break
        option, equals, value = arg.partition("=")
        # --config, or a prefix argparse takes for it (--conf).
        if len(option) > 3 and "--config".startswith(option):
            if equals:
                return value
            return args[index + 1] if index + 1 < len(args) else None
        if arg == "-c" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def _find_modules_in_the_current_directory() -> None:
    # A user's own plugin module next to the configuration ([plugins] modules, -p MODULE) is
    # found as `python -m` would find it. Appended, so it never shadows an installed module.
    try:
        here = os.getcwd()
    except OSError:  # the directory was deleted under the shell: nothing to find there
        return
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tradeloom`` command with ``argv``; return its exit status."""
    return _command(argv, exiting=False)


def console_main() -> NoReturn:
    """The ``tradeloom`` executable: :func:`main`, then exit with its status. A Ctrl-C or
    SIGTERM once a run's results are being written, up to the process's exit, is said to have
    come too late and leaves the status the run's."""
    raise SystemExit(_command(None, exiting=True))


def _command(argv: Sequence[str] | None, *, exiting: bool) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before a command runs (plugins loading, the command line being read): a
        # command handles its own; this one has nothing to save, so no traceback either.
        print("tradeloom: interrupted", file=sys.stderr)
        return 130
    finally:
        commands = sys.modules.get("tradeloom.commands")
        if commands is not None:
            commands.release_late_signals(unblock=not exiting)


def _main(argv: Sequence[str] | None) -> int:
    argv = _plugin_options_first(sys.argv[1:] if argv is None else argv)
    _find_modules_in_the_current_directory()
    blocked, modules = _early_plugin_options(argv)
    configured = _configured_plugins(argv)
    from tradeloom import commands, scaffold

    manager = PluginManager()
    manager.register(commands, name="tradeloom.commands")
    manager.register(scaffold, name="tradeloom.scaffold")
    try:
        if configured is None:
            manager.load(block=blocked, modules=modules)
        else:
            manager.load(
                autoload=configured.autoload,
                enable=configured.enable,
                block=[*configured.block, *blocked],
                modules=modules,
            )
    except TradeloomError as exc:
        print(f"tradeloom: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(manager)
    args = parse_command_line(parser, argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    failed = _failed_modules(manager, modules)
    if failed and args.command != "plugins":  # the listing shows them; nothing else may run
        say(f"tradeloom: error: {failed}")
        return 2
    args.plugin_manager = manager
    args.blocked_plugins = blocked
    args.plugin_modules = modules
    try:
        code: Any = handler(args)
        sys.stdout.flush()  # a reader that went away is found here, not at exit (status 120)
    except TradeloomError as exc:
        commands.remove_unused_output_directories()
        say(f"tradeloom: error: {exc}")
        _print_cause(exc, verbose=args.verbose > 0)
        for note in getattr(exc, "__notes__", ()):  # what the command adds (state kept, say)
            say(f"tradeloom: {note}")
        return 1
    except KeyboardInterrupt as exc:
        detail = str(exc)  # where a backtest got to, say
        say(f"tradeloom: interrupted{' ' + detail if detail else ''}", logging.WARNING)
        status: int = getattr(exc, "exit_status", 130)  # 143 for a backtest's SIGTERM
        return status
    except BrokenPipeError as exc:
        if not _stdout_closed():
            # A pipe of a feed, a transport or a plugin, not ours: an error like any other.
            say(f"tradeloom: error: {type(exc).__name__}: {exc}")
            return 1
        return 1  # the reader went away (`tradeloom plugins | head`): stop, quietly
    return int(code or 0)


def _stdout_closed() -> bool:
    """Whether standard output's reader has gone; if so, standard output is pointed at the
    null device, or Python would report the pipe again when it flushes at exit."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # replaced by something that is no file
        return False
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(flags & select.POLLERR for _, flags in poller.poll(0)):
            return False  # writable: the broken pipe was someone else's
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return True


def _print_cause(exc: TradeloomError, *, verbose: bool) -> None:
    """Where a strategy's (or a plugin's) own exception was raised: the innermost frame, or
    with ``-v`` the whole traceback."""
    cause = exc.__cause__
    if cause is None or cause.__traceback__ is None:
        return
    if verbose:
        say_traceback(cause)
        return
    frames = traceback.extract_tb(cause.__traceback__)
    # The innermost frame of the strategy's (or plugin's) own code: a float quantity is
    # refused deep in pydantic, called from tradeloom, called from the line that passed it.
    own = [frame for frame in frames if not _is_library(frame.filename)]
    if isinstance(exc, ConfigError) and (isinstance(cause, ValueError) or not own):
        # A parameter a component refused (ValueError, as documented), or arguments its
        # signature does not take: the message says it all. Anything else its constructor
        # raised is a bug in it, shown where it is.
        return
    if not own:  # all of it in tradeloom, its dependencies or Python: where is no help
        say("  (-v shows the traceback)")
        return
    frame = own[-1]
    say(f"  raised at {frame.filename}:{frame.lineno} in {frame.name} (-v shows the traceback)")


_DEPENDENCIES = (pydantic, pydantic_core, pluggy, anyio, tradeloom)
_OPTIONAL_DEPENDENCIES = ("aiokafka", "pyarrow", "psycopg", "psycopg_pool", "uuid6", "attrs")


@functools.cache
def _library_folders() -> tuple[str, ...]:
    """The folders of tradeloom, its stock plugins (the entry points of its own distribution)
    and the dependencies imported so far."""
    modules = [*_DEPENDENCIES]
    names = list(_OPTIONAL_DEPENDENCIES)
    with contextlib.suppress(Exception):  # an odd installation: fewer folders, no failure
        names += [
            entry.module.partition(".")[0]
            for entry in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
            if entry.dist is not None and entry.dist.name == "tradeloom"
        ]
    modules += [sys.modules[name] for name in names if name in sys.modules]
    return tuple(
        str(Path(str(module.__file__)).parent) + os.sep
        for module in modules
        if getattr(module, "__file__", None)
    )


_STANDARD_LIBRARY = tuple(
    str(Path(sysconfig.get_paths()[name])) + os.sep for name in ("stdlib", "platstdlib")
)


def _is_library(filename: str) -> bool:
    """Code of tradeloom (its generated code and stock plugins too), its dependencies or the
    standard library (not what is installed under it): not where a strategy's or plugin's
    author looks first."""
    if filename.startswith("<") or filename.startswith(_library_folders()):
        return True
    return filename.startswith(_STANDARD_LIBRARY) and not any(
        folder in filename for folder in ("site-packages", "dist-packages")
    )


def _failed_modules(manager: PluginManager, modules: Sequence[str]) -> str:
    """What went wrong with the modules asked for by ``-p MODULE`` ('' when nothing did)."""
    return "; ".join(manager.failed_modules(modules))


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":  # pragma: no cover
    console_main()
