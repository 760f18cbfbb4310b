"""Exceptions raised by tradeloom. Every message names what is wrong and where."""

from __future__ import annotations


class TradeloomError(Exception):
    """Base class of every tradeloom error."""


class ConfigError(TradeloomError):
    """The configuration (TOML file, environment or arguments) is invalid."""


class PluginError(TradeloomError):
    """A plugin could not be loaded, or its registrations conflict."""


class UnknownComponentError(ConfigError):
    """Configuration names a component that no plugin registers."""


class DuplicateComponentError(PluginError):
    """Two plugins register a component of the same kind under the same name."""


class DecodeError(TradeloomError):
    """Bytes could not be turned into a valid event. ``reason`` says why."""

    def __init__(self, reason: str, *, error_type: str = "DecodeError") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


def as_decode_error(exc: Exception) -> DecodeError:
    """``exc``, raised while decoding some input, as a :class:`DecodeError`: itself, or a
    decoder's own failure on those bytes (a case it does not word, such as a ``RecursionError``
    on deeply nested JSON), of type ``decode_failed``. A consumer sets the input aside either
    way, rather than stop on it and stop on it again after each restart."""
    if isinstance(exc, DecodeError):
        return exc
    return DecodeError(
        f"the decoder failed on this input: {type(exc).__name__}: {exc}",
        error_type="decode_failed",
    )


class BadInputError(TradeloomError):
    """A record from a feed (a CSV row, a message) is invalid."""


class DeadLetterError(TradeloomError):
    """Bad input could not be set aside (the ``[pipeline] dead_letter_file`` could not be
    written): the run stops rather than lose it."""


class EventOrderError(BadInputError):
    """A backtest's feed gave a market event earlier than one it gave before: the simulated
    clock cannot go back. The state saved up to there misses the events never taken, so a
    resume would skip them: run again from empty books once the events are in order."""


class FeedError(TradeloomError):
    """A feed raised while giving its events, or gave something that is not a market event
    (the feed's own exception is the cause)."""


class PersistenceError(TradeloomError):
    """Saving or loading state failed."""


class CorruptStateError(PersistenceError):
    """Stored state exists but cannot be read back; it is never silently replaced."""


class StageError(TradeloomError):
    """A component running in a stage (validator, executor, persistence) raised."""


class StrategyError(StageError):
    """A strategy's own code raised."""


def describe_error(error: BaseException) -> str:
    """``Type: message``, said once when the message starts with the type's name already (as
    some client libraries' errors do), and just the type when there is no message."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else text or name
