"""A JSON-lines file of dead letters: the in-process pipeline's dead-letter destination."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import IO

from tradeloom.components import DeadLetter
from tradeloom.errors import ConfigError


class DeadLetterFile:
    """Appends one JSON object per dead letter, flushed at once, so nothing refused is lost
    even if the process dies. ``raw`` is kept as text when it is UTF-8, else as base64."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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
        try:
            raw: dict[str, str] = {"raw": letter.raw.decode("utf-8")}
        except UnicodeDecodeError:
            raw = {"raw_base64": base64.b64encode(letter.raw).decode("ascii")}
        record = {
            "ts": letter.ts.isoformat(),
            "source": letter.source,
            "location": letter.location,
            "error_type": letter.error_type,
            "reason": letter.reason,
            **raw,
        }
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
