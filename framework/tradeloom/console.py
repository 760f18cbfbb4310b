"""What the command line tells its user on standard error: plain lines, or log records while
the console log writes JSON (``--log-json``, ``[monitoring] log_json``), so that whatever
collects the log gets the errors, interruptions and warnings too."""

from __future__ import annotations

import logging
import sys
import traceback

_logger = logging.getLogger("tradeloom.cli")


def logs_json() -> bool:
    """Whether a console handler of the root logger formats records as JSON (its formatter
    says so with a true ``writes_json`` attribute, as ``tradeloom_health``'s does)."""
    return any(
        getattr(handler.formatter, "writes_json", False)
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
    )


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
