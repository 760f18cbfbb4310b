"""A JSON-lines file of dead letters: the in-process pipeline's dead-letter destination."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import IO

from tradeloom.components import DeadLetter
from tradeloom.errors import ConfigError, DeadLetterError


class DeadLetterFile:
    """Appends one JSON object per dead letter, flushed at once, so nothing refused is lost
    even if the process dies. ``raw`` is kept as text when it is UTF-8, else as base64."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._failed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            # Found before any input is read: nothing refused can be lost for want of a file.
            reason = "it is a directory" if self.path.is_dir() else (exc.strerror or str(exc))
            raise ConfigError(
                f"pipeline.dead_letter_file {str(self.path)!r} cannot be opened for appending: "
                f"{reason}"
            ) from None

    def write(self, letter: DeadLetter) -> None:
        if self._handle is None:
            raise ValueError(f"dead-letter file {self.path} is closed")
        record = {
            "ts": letter.ts.isoformat(),
            "source": letter.source,
            "location": letter.location,
            "error_type": letter.error_type,
            "reason": letter.reason,
            **_bytes_field("raw", letter.raw),
        }
        if letter.key is not None:
            record.update(_bytes_field("key", letter.key))
        try:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._handle.flush()
        except OSError as exc:
            self._failed = True
            raise DeadLetterError(
                f"pipeline.dead_letter_file {str(self.path)!r} could not be written "
                f"({exc.strerror or exc}): bad input from {letter.source} {letter.location} "
                f"({letter.reason}) could not be set aside there, so the run stops"
            ) from None

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.close()
        except OSError:
            if not self._failed:
                raise
            # What could not be written is still buffered: the failure was said already.


def _bytes_field(name: str, data: bytes) -> dict[str, str]:
    """``{name: text}`` for UTF-8 bytes, else ``{name_base64: ...}``."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}
