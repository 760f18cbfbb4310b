"""What the command line tells its user on standard error: plain lines, or log records while
the console log writes JSON (``--log-json``, ``[monitoring] log_json``), so that whatever
collects the log gets the errors, interruptions and warnings too."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from typing import Any

_logger = logging.getLogger("tradeloom.cli")


def _json_console() -> logging.StreamHandler[Any] | None:
    for handler in logging.getLogger().handlers:
        if (
            isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)  # a log file is not the console
            and getattr(handler.formatter, "writes_json", False)
        ):
            return handler
    return None


def logs_json() -> bool:
    """Whether a console handler of the root logger formats records as JSON (its formatter
    says so with a true ``writes_json`` attribute, as ``tradeloom_health``'s does)."""
    return _json_console() is not None


def say_from_a_signal_handler(message: str, level: int = logging.WARNING) -> None:
    """:func:`say` for a signal handler, which may interrupt any code, a write to the console
    too: the line (or the JSON record) is made here and written to the console with one
    system call, taking no lock, neither logging's nor a stream's. Other handlers of the log
    (a file) do not get it."""
    line = message
    console = _json_console()
    fd = 2
    if console is not None and console.formatter is not None:
        text = message.removeprefix("tradeloom: ").strip()
        record = _logger.makeRecord(_logger.name, level, __file__, 0, text, (), None)
        line = console.formatter.format(record)
        with contextlib.suppress(AttributeError, OSError, ValueError):
            fd = console.stream.fileno()
    with contextlib.suppress(OSError):
        os.write(fd, f"{line}\n".encode())


def say(message: str, level: int = logging.ERROR) -> None:
    """Tell the user ``message``: a line such as ``tradeloom: error: ...``, or a detail line
    under one (indented). As JSON, a record of the ``tradeloom.cli`` logger at ``level``."""
    if logs_json():
        _logger.log(level, message.removeprefix("tradeloom: ").strip())
    else:
        print(message, file=sys.stderr)


def say_traceback(error: BaseException) -> None:
    """The whole traceback of ``error`` (``-v``)."""
    if logs_json():
        _logger.error("traceback", exc_info=(type(error), error, error.__traceback__))
    else:
        traceback.print_exception(error, file=sys.stderr)
