"""Built-in sub-commands, registered through the same hook third-party commands use."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from tradeloom import hookimpl
from tradeloom.awaitables import sole_exception
from tradeloom.cli import print_json
from tradeloom.console import say, say_from_a_signal_handler
from tradeloom.errors import ConfigError, EventOrderError, PersistenceError, TradeloomError
from tradeloom.plugins import PluginManager
from tradeloom.runtime.pipeline import ROLES, Pipeline
from tradeloom.runtime.results import RunResult
from tradeloom.settings import Settings, build_settings, load_settings

T = TypeVar("T")

DEMO_DATA = "orcl-1995-2014.csv"


@hookimpl(tryfirst=True)  # the built-in commands first: a plugin cannot take their names
def tradeloom_add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="replay bundled ORCL daily bars through an SMA crossover (no server needed)",
        description="Backtests SMA(10/30) on bundled ORCL daily bars 1995-2014 with the paper "
        "trader and sqlite, then writes result.json and equity.png.",
    )
    demo.add_argument(
        "--out", default="tradeloom-demo", help="output folder (default: %(default)s)"
    )
    demo.set_defaults(func=cmd_demo)

    backtest = subparsers.add_parser(
        "backtest", help="replay market data through a pipeline on a simulated clock"
    )
    backtest.add_argument("-c", "--config", required=True, help="tradeloom.toml")
    backtest.add_argument("--out", required=True, help="folder for result.json and equity.png")
    backtest.add_argument("--no-progress", action="store_true", help="no progress bar")
    backtest.add_argument(
        "--resume",
        action="store_true",
        help="continue from the state already in the configured persistence",
    )
    backtest.set_defaults(func=cmd_backtest)

    run = subparsers.add_parser(
        "run", help="run a live pipeline until interrupted (SIGINT/SIGTERM drain, then stop)"
    )
    run.add_argument("-c", "--config", required=True, help="tradeloom.toml")
    run.add_argument(
        "--role",
        action="append",
        choices=("all", *ROLES),
        help="stage(s) this process runs (repeatable; default: all)",
    )
    run.add_argument("--out", help="write result.json (and equity.png) here on exit")
    run.add_argument(
        "--replay-from-start",
        action="store_true",
        help="publish a replay to the broker from its first event, not after what an earlier "
        "run published",
    )
    run.set_defaults(func=cmd_run)

    plugins = subparsers.add_parser("plugins", help="list plugins and what they register")
    plugins.add_argument("-c", "--config", help="tradeloom.toml ([plugins] section is used)")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=cmd_plugins)


def _manager_for(args: argparse.Namespace, settings: Settings) -> PluginManager:
    """A plugin manager honouring the configuration's [plugins] section and -p options."""
    manager = PluginManager()
    plugin_settings = settings.plugins
    return manager.load(
        autoload=plugin_settings.autoload,
        enable=plugin_settings.enable,
        block=[*plugin_settings.block, *getattr(args, "blocked_plugins", [])],
        modules=[*plugin_settings.modules, *getattr(args, "plugin_modules", [])],
    )


def _progress_bar(enabled: bool) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(unit=" events", unit_scale=True, file=sys.stderr, mininterval=0.5, leave=False)
    return bar.update, bar.close


def _backtest(
    settings: Settings,
    args: argparse.Namespace,
    progress: bool,
    on_failure: Callable[[RunResult], None],
) -> RunResult:
    """Run a backtest. When it fails, ``on_failure`` gets what it did until then before the
    error is raised (with a note on the state it left)."""
    update, close = _progress_bar(progress)
    pipeline = Pipeline(
        settings,
        manager=_manager_for(args, settings),
        mode="backtest",
        progress=update,
        resume=getattr(args, "resume", False),
    )
    received: list[int] = []  # the terminating signal, once one came
    try:
        result = _run_unwrapped(_run_until_terminated, pipeline, received)
        if received:  # it came as the run was finishing, too late to stop it
            say(
                f"tradeloom: {signal.Signals(received[0]).name} came as the run finished: its "
                "results are complete",
                logging.WARNING,
            )
        return result
    except TradeloomError as exc:
        can_resume = hasattr(args, "resume")
        kept = _what_is_kept(pipeline, settings, can_resume=can_resume, failure=exc)
        if kept:
            exc.add_note(kept)  # shown under the error: the next plain run would refuse it
        on_failure(pipeline.result)
        raise
    except KeyboardInterrupt:
        can_resume = hasattr(args, "resume")  # the demo starts afresh every time
        raise BacktestInterrupted(
            pipeline, settings, can_resume=can_resume, signum=received[0] if received else None
        ) from None
    finally:
        close()


def _run_unwrapped(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(func, *args)``, an error from inside a task group reported like any other
    (not as a task-group traceback), its cause kept."""
    try:
        return anyio.run(func, *args)
    except BaseExceptionGroup as group:
        sole = sole_exception(group)
        if sole is None:
            raise
        raise sole from sole.__cause__


def _receives_signals() -> bool:
    """Whether this process can take SIGTERM here: POSIX, in the main thread."""
    return os.name == "posix" and threading.current_thread() is threading.main_thread()


async def _run_until_terminated(pipeline: Pipeline, received: list[int]) -> RunResult:
    """Run a backtest; SIGTERM (``kill``, ``timeout``, a service manager, a cancelled CI job)
    stops it as Ctrl-C does, at its next pause between two times: what it did is saved and
    written. Raises KeyboardInterrupt then, with the signal added to ``received``. (Signals
    are received only in the main thread of a POSIX process; elsewhere the run just runs.)"""
    if not _receives_signals():
        return await pipeline.run()
    run_scope = anyio.CancelScope()
    async with anyio.create_task_group() as tasks:

        async def cancel_on_sigterm(*, task_status: TaskStatus[None]) -> None:
            # Receiving until the run has finished: a repeated SIGTERM while it saves and
            # closes is taken here too, not by the default action (which would kill it).
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                task_status.started()
                async for signum in signals:
                    if not received:
                        received.append(signum)
                        run_scope.cancel()  # the run is cancelled where it pauses

        await tasks.start(cancel_on_sigterm)
        with run_scope:
            result = await pipeline.run()
        tasks.cancel_scope.cancel()
    if run_scope.cancelled_caught:
        raise KeyboardInterrupt  # the run was cancelled by SIGTERM
    return result


@contextmanager
def _sigterm_ignored() -> Iterator[None]:
    if not _receives_signals():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, which cannot put it back
            signal.signal(signal.SIGTERM, previous)


_LATE_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_late_signals_held = False


@contextmanager
def _writing_results() -> Iterator[None]:
    """Around writing the results of a run that completed: a Ctrl-C or SIGTERM from then on
    (the results being written, the command ending) waits, and is said to have come too late
    to stop anything, by :func:`release_late_signals` as the command ends; the exit status
    stays the run's. (POSIX, main thread.)"""
    global _late_signals_held
    if _receives_signals() and not _late_signals_held:
        signal.pthread_sigmask(signal.SIG_BLOCK, _LATE_SIGNALS)
        _late_signals_held = True
    yield
    sys.stdout.flush()


def release_late_signals(*, unblock: bool = True) -> None:
    """Take the SIGINT and SIGTERM held since a finished run's results began to be written
    (see :func:`_writing_results`) and say they came too late; with ``unblock`` deliver
    later ones again (without it, they stay held until the process exits)."""
    global _late_signals_held
    if not _late_signals_held:
        return
    for signum in sorted(signal.sigpending() & _LATE_SIGNALS):
        signal.sigtimedwait({signum}, 0)  # taken here: not delivered once unblocked
        say(
            f"tradeloom: {signal.Signals(signum).name} came after the run had finished: its "
            "results were written in full",
            logging.WARNING,
        )
    if unblock:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _LATE_SIGNALS)
        _late_signals_held = False


class BacktestInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a backtest: says where it stopped and whether ``--resume``
    can go on from there; ``result`` holds what happened until then (``result.interrupted``
    says where). ``exit_status`` is the shell's for the signal: 130 for SIGINT, 143 for
    SIGTERM."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        *,
        can_resume: bool,
        signum: int | None = None,
    ) -> None:
        self.result = pipeline.result
        if self.result.interrupted is None:  # interrupted before the pipeline ran
            self.result.interrupted = pipeline.where_it_stopped()
        self.exit_status = 128 + (signum or signal.SIGINT)
        kept = _what_is_kept(pipeline, settings, can_resume=can_resume)
        by = f"({signal.Signals(signum).name}) " if signum else ""
        super().__init__(f"{by}{self.result.interrupted}; {kept}")


def _what_is_kept(
    pipeline: Pipeline,
    settings: Settings,
    *,
    can_resume: bool,
    failure: TradeloomError | None = None,
) -> str:
    """What an interrupted backtest (or, given its ``failure``, a failed one) left in its
    persistence, and whether ``--resume`` can go on from there. For a failure, '' when it
    left nothing there."""
    result = pipeline.result
    if (
        isinstance(failure, PersistenceError)
        and not pipeline.status.market_events
        and not result.fill_count
    ):
        return ""  # the stored state could not be used: this run changed nothing there
    nothing = ""
    if not result.fill_count and result.resumed_after is None:
        nothing = "nothing was traded, so there is no state to resume from"
    elif settings.persistence.name == "memory":
        nothing = "nothing is kept (memory persistence)"
    elif result.unsaved_portfolios:
        return "its state could not be saved (see the log)"
    if nothing:
        return "" if failure is not None else nothing
    # Given --resume already, the same command goes on again.
    go_on = "run the same command again" if pipeline.resume else "add --resume to the same command"
    if failure is None:
        saved, start_over = "its state is saved", ""
        if result.resumed_after is not None and not pipeline.status.market_events:
            saved = "its state is as it was"  # stopped while it warmed up: nothing new
    else:
        saved = "its state up to the failure is saved"
        go_on = f"once the cause is fixed, {go_on}"
        start_over = " (or delete that state to start over)"
    if isinstance(failure, EventOrderError):
        # Stamped at the latest time taken: a resume would skip the earlier events the run
        # refused, and every other one up to that time.
        return (
            f"{saved}, but it misses the events out of order: delete that state and run again "
            "once the events are in time order (--resume would skip them)"
        )
    if not can_resume:
        return saved
    return f"{saved}: {go_on} to continue from there{start_over}"


_MADE_FOR_RESULTS: list[Path] = []
"""Directories :func:`output_directory` made in this process (see
:func:`remove_unused_output_directories`)."""


def output_directory(path: str | Path) -> Path:
    """The directory results go to, made now: a path that cannot be one is an error before
    the run, not after it (when its state is already saved)."""
    if not str(path).strip():
        raise ConfigError("--out: give a directory (an empty path would mean the current one)")
    out = Path(path)
    try:
        # The directories it makes, the deepest first.
        made = [p for p in (out, *out.parents) if not p.exists()]
        out.mkdir(parents=True, exist_ok=True)
        _MADE_FOR_RESULTS.extend(made)
    except FileExistsError:
        raise ConfigError(f"--out {out}: exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the directory: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"--out {out}: the directory is not writable")
    return out


def remove_unused_output_directories() -> None:
    """A command that failed before writing anything (a configuration error found as the
    pipeline was built) leaves no empty directory of its own making behind."""
    made, _MADE_FOR_RESULTS[:] = list(_MADE_FOR_RESULTS), []
    for directory in made:  # the deepest first
        try:
            directory.rmdir()
        except OSError:  # something was written there (or it is gone): keep what is above
            return


def _report(result: RunResult, out: Path, title: str, roles: Collection[str] | None = None) -> None:
    try:
        written = result.write(out, roles=roles)
    except OSError as exc:
        print(title)
        print(result.format_summary(roles))
        error = ResultsNotWritten(
            f"the results could not be written in {out} (those of an earlier run there are "
            f"as they were): {exc}"
        )
        if result.unsaved_portfolios:
            error.add_note(
                f"error: final state of portfolio(s) {', '.join(result.unsaved_portfolios)} "
                "could not be saved either; see the log"
            )
        raise error from None
    print(title)
    print(result.format_summary(roles))
    for label, path in written.items():
        print(f"  {label:<15} {path}")


class ResultsNotWritten(TradeloomError):
    """A run's ``result.json`` or ``equity.png`` could not be written (a full disk)."""


def demo_settings(out: Path) -> Settings:
    data = resources.files("tradeloom.demo").joinpath(DEMO_DATA)
    return build_settings(
        {
            "feed": {
                "name": "replay",
                "params": {"path": str(data), "format": "yahoo", "instrument": "ORCL"},
            },
            "strategies": [
                {"name": "sma_cross", "params": {"fast": 10, "slow": 30, "quantity": "10"}}
            ],
            "executor": {"name": "paper", "params": {"fill_at": "next", "commission_bps": "10"}},
            "persistence": {"name": "sqlite", "params": {"path": str(out / "demo.sqlite")}},
            "portfolio": {"starting_cash": "100000"},
        },
        source="the demo's configuration",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    out = output_directory(args.out)
    settings = demo_settings(out)
    _clear_demo_state(out / "demo.sqlite")  # the demo always starts from an empty book
    print("tradeloom demo: SMA(10/30) crossover on ORCL daily bars, 1995-2014")
    print("  replay feed -> sma_cross -> paper trader (next open, 10 bps) -> sqlite\n")
    result = _backtest_reported(settings, args, out, "Result", progress=sys.stderr.isatty())
    with _writing_results():
        _report(result, out, "Result")
        print(f"  {'database':<15} {out / 'demo.sqlite'}")
        # A copy of the sample data, for the configuration examples of the README and docs.
        data = out / DEMO_DATA
        data.write_bytes(resources.files("tradeloom.demo").joinpath(DEMO_DATA).read_bytes())
        print(f"  {'sample data':<15} {data}")
    return _exit_code(result)


def _clear_demo_state(database: Path) -> None:
    """Remove the demo's state file (and SQLite's files beside it), unless a demo running
    in the same folder holds it: its writer lock (``<file>.lock``) is left, and respected."""
    lock_path = Path(f"{database}.lock")
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the state file's own locks refuse a second run
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None and lock_path.is_file():
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PersistenceError(
                    f"another tradeloom demo is running with {database}; wait for it to end, "
                    "or give this one another --out"
                ) from None
        finally:
            os.close(fd)  # released: the run takes the hold itself
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def cmd_backtest(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    out = output_directory(args.out)
    title = f"Backtest of {args.config}"
    progress = not args.no_progress and sys.stderr.isatty()
    result = _backtest_reported(settings, args, out, title, progress=progress)
    if result.resumed_after is not None and not result.market_events and not result.fill_count:
        # Resumed with nothing after the stored state (warned about): an empty result would
        # replace the one the run that made the state may have written there.
        print(title)
        print(result.format_summary())
        # The directory was made before the run (see output_directory): say "left as it was"
        # only of one that holds something.
        kept = f"{out} was left as it was" if any(out.iterdir()) else f"nothing written to {out}"
        print(f"  nothing after the stored state was backtested: {kept}")
        return _exit_code(result)
    with _writing_results():
        _report(result, out, title)
    if not result.market_events + result.skipped_events and result.dead_letter_count:
        # Every row refused (a wrong format, delimiter or zone): the run did nothing, and a
        # script running it must not read success.
        say(
            f"tradeloom: error: every input was bad ({result.dead_letter_count:,} set aside, "
            "see the dead letters): nothing was backtested; is the feed's format right?"
        )
        return 1
    return _exit_code(result)


def _backtest_reported(
    settings: Settings, args: argparse.Namespace, out: Path, title: str, *, progress: bool
) -> RunResult:
    """Run a backtest; when it is interrupted or fails, still write and show what it did
    until then (marked as interrupted or failed), then let that end the command."""
    try:
        return _backtest(
            settings,
            args,
            progress,
            on_failure=lambda result: _report_partial(result, out, title, "failed", "backtest"),
        )
    except BacktestInterrupted as interrupted:
        _report_partial(interrupted.result, out, title, "interrupted", "backtest")
        raise interrupted from None


def _report_partial(
    result: RunResult,
    out: Path | None,
    title: str,
    how: str,
    what: str,
    roles: Collection[str] | None = None,
    took_events: bool = False,
) -> None:
    """Show (and write, with ``out``) what a run that failed or was interrupted did until
    then, titled as such; the error that ended it is then said as usual. ``took_events``: the
    run's stages took events (a process without the feed knows no first event time)."""
    if result.first_event_time is None and not took_events:
        return  # it took no event: there is nothing to show
    try:
        with _sigterm_ignored():  # a repeated SIGTERM does not cut the report short
            if out is None:
                print(f"{title} ({how})")
                print(result.format_summary(roles))
            else:
                _report(result, out, f"{title} ({how})", roles)
    except (Exception, KeyboardInterrupt) as exc:  # a second Ctrl-C, a full disk
        why = f"{type(exc).__name__}: {exc}" if str(exc) else "interrupted again"
        say(f"tradeloom: the result of the {how} {what} was not written: {why}")


def _exit_code(result: RunResult) -> int:
    if result.unsaved_portfolios:
        say(
            "tradeloom: error: final state of portfolio(s) "
            f"{', '.join(result.unsaved_portfolios)} could not be saved; see the log"
        )
        return 1
    return 0


class _StopOnSignals:
    """SIGINT or SIGTERM drains the pipeline, then stops it; a second one stops the process at
    once. Handled as the signal comes (not by the event loop), so it is said, and a second one
    works, also while a stage blocks the loop (a strategy in a long computation, a back end
    that hangs). Installed before the pipeline is built: a signal while it is being set up
    (plugins, configuration, connections) stops the run as soon as it starts."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._pipeline: Pipeline | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        # It may interrupt any code, a write to stderr too: it takes no lock (no print, no
        # logging), and asks for the stop before it says anything.
        self.received.append(signum)
        name = signal.Signals(signum).name
        if len(self.received) == 1:
            pipeline, loop = self._pipeline, self._loop
            if pipeline is not None and loop is not None:
                loop.call_soon_threadsafe(pipeline.stop)
            say_from_a_signal_handler(
                f"tradeloom: {name}: draining, then stopping (send it again to stop at once)"
            )
            return
        say_from_a_signal_handler(
            f"tradeloom: {name} again: stopping at once, without draining (what was handled "
            "since the last commit and checkpoint is handled again after a restart)",
            logging.ERROR,
        )
        os._exit(128 + signum)

    def attach(self, pipeline: Pipeline, loop: asyncio.AbstractEventLoop) -> None:
        """Stop ``pipeline`` on the signals from now on, and now if one came already."""
        self._pipeline, self._loop = pipeline, loop
        if self.received:
            pipeline.stop()


@contextmanager
def _signals_stop_the_run() -> Iterator[_StopOnSignals]:
    stopper = _StopOnSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stopper  # signal handlers belong to the main thread: the embedding application's
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, stopper) for signum in wanted}
    try:
        yield stopper
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed from outside Python, cannot be put back
                signal.signal(signum, handler)


def cmd_run(args: argparse.Namespace) -> int:
    roles = None if not args.role or "all" in args.role else sorted(set(args.role))
    with _signals_stop_the_run() as stopper:
        settings = load_settings(args.config)
        out = output_directory(args.out) if args.out else None
        pipeline = Pipeline(
            settings,
            manager=_manager_for(args, settings),
            mode="live",
            roles=args.role or ("all",),
            replay_from_start=args.replay_from_start,
        )

        async def main() -> RunResult:
            stopper.attach(pipeline, asyncio.get_running_loop())
            return await pipeline.run()

        try:
            result = _run_unwrapped(main)
        except Exception:
            # The pipeline drained and saved; what it did until the error is shown as it
            # would have been on a clean exit (a feed that gave up, a strategy's error).
            took = any(stage.events_in for stage in pipeline.status.stages.values())
            _report_partial(pipeline.result, out, "Run", "failed", "run", roles, took)
            raise
    if out is not None:
        with _writing_results():
            _report(result, out, "Run", roles)
    else:
        print(result.format_summary(roles))
    return _exit_code(result)


def cmd_plugins(args: argparse.Namespace) -> int:
    settings = load_settings(args.config) if args.config else build_settings({})
    manager = _manager_for(args, settings)
    infos = manager.plugin_list()
    failed = [info.name for info in infos if _status(info) == "failed"]
    problems = [
        *manager.conflicts,
        *([f"plugin(s) failed to load: {', '.join(failed)}"] if failed else []),
    ]
    conflict = "; ".join(problems) or None
    if args.json:
        print_json(
            {
                "plugins": [
                    {
                        "name": info.name,
                        "distribution": info.distribution,
                        "version": info.version,
                        "source": info.source,
                        "status": _status(info),
                        "error": info.error,
                        "warning": info.warning,
                        "registers": info.registers,
                    }
                    for info in infos
                ],
                "error": conflict,
                "warnings": manager.unknown_names,
            }
        )
        return 1 if conflict else 0
    origins = {
        info.name: f"{info.distribution or '-'} {info.version or ''}".strip() for info in infos
    }
    name_width = max([24, *(len(info.name) for info in infos)])
    origin_width = max([28, *(len(origin) for origin in origins.values())])
    for info in infos:
        origin = origins[info.name]
        print(f"{info.name:<{name_width}} {origin:<{origin_width}} {_status(info)}")
        for kind, names in sorted(info.registers.items()):
            print(f"    {kind:<14} {', '.join(sorted(names))}")
        if _status(info) == "not loaded":  # not an error: only what was asked for loads
            print(f"    not loaded     autoload is off: add {info.name!r} to [plugins] enable")
        elif info.error and not info.blocked:
            # A message of several lines stays in its column, under the first.
            print("    error          " + info.error.replace("\n", "\n" + " " * 19))
        if info.warning:
            print("    warning        " + info.warning)
    for message in manager.unknown_names:
        print(f"tradeloom: warning: {message}", file=sys.stderr)
    if conflict:
        print(f"tradeloom: error: {conflict}", file=sys.stderr)
        return 1
    return 0


def _status(info: Any) -> str:
    if info.blocked:
        return "blocked"
    if info.error:
        return "not loaded" if "autoload" in info.error else "failed"
    return "loaded"
