"""{{ cookiecutter.class_name }}: the fills journal and the latest portfolio snapshots in a folder.

- ``fills.jsonl``: one line per fill, appended and flushed to disk (``fsync``) before
  ``record_fills`` returns. A line cut short by a crash mid-write (the last one, without its
  line break) was never acknowledged: readers pass over it, and the next write cuts it off
  first (only the writer does: a reader must not cut a line the writer is still writing).
- ``snapshots.json``: the latest snapshot of each portfolio, written to a temporary file and
  renamed over the old one, so a crash leaves the old snapshots or the new ones, never half.
- ``metadata.json``: a few named texts kept with the state the same way (tradeloom keeps the
  settings of the run that saved it there, so that a resumed run can say which changed).
- ``rejections.jsonl``: the rejections journal, one line per rejected signal, appended as the
  fills are. A pipeline split over processes writes it; its risk and execution processes read
  it after a crash, so that they do not decide or execute a rejected signal a second time.

Every value is written as tradeloom's events serialize themselves (Decimals as exact text) and
read back with ``tradeloom.storage``, which checks the schema version and the owner of each.
One process writes a folder at a time: this back end does not lock it (see the README).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from tradeloom.components import Persistence
from tradeloom.errors import CorruptStateError, PersistenceError
from tradeloom.events import Fill, PortfolioSnapshot, Rejection
from tradeloom.storage import (
    check_metadata,
    decode_stored_fill,
    decode_stored_rejection,
    decode_stored_snapshot,
    journal_count,
)


class {{ cookiecutter.class_name }}(Persistence):
    """Keeps tradeloom's state in the folder ``path`` (created when missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not str(path).strip():
            raise ValueError("path is required: the folder that keeps the state")
        self.path = Path(path).expanduser()
        self._order_ids: set[UUID] = set()
        self._rejected: set[UUID] = set()
        self._snapshots: dict[str, Any] = {}

    @property
    def journal(self) -> Path:
        return self.path / "fills.jsonl"

    @property
    def snapshot_file(self) -> Path:
        return self.path / "snapshots.json"

    @property
    def metadata_file(self) -> Path:
        return self.path / "metadata.json"

    @property
    def rejections_file(self) -> Path:
        return self.path / "rejections.jsonl"

    # -- the contract --------------------------------------------------------------------

    def open(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PersistenceError(f"cannot use {self.path} for the state: {exc}") from exc
        self._order_ids = {fill.order_id for fill in self.load_fills()}
        self._rejected = {rejection.signal.event_id for rejection in self.load_rejections()}
        self._snapshots = self._read_snapshots()

    def close(self) -> None:
        self._order_ids = set()
        self._rejected = set()
        self._snapshots = {}

    def record_fills(self, fills: Sequence[Fill]) -> None:
        lines: list[str] = []
        new_ids: set[UUID] = set()
        for fill in fills:
            if fill.order_id in self._order_ids or fill.order_id in new_ids:
                continue  # journaled already: record_fills is idempotent by order id
            new_ids.add(fill.order_id)
            record = {"portfolio_id": fill.strategy_id, "fill": fill.model_dump_json()}
            lines.append(json.dumps(record) + "\n")
        self._append(self.journal, lines)
        self._order_ids |= new_ids  # only once they are on disk

    def save_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        updated = dict(self._snapshots)
        for snapshot in snapshots:  # every one serialized before anything is written
            updated[snapshot.portfolio_id] = json.loads(snapshot.model_dump_json())
        self._replace(self.snapshot_file, json.dumps(updated, indent=1) + "\n")
        self._snapshots = updated

    def load_snapshots(self) -> dict[str, PortfolioSnapshot]:
        snapshots: dict[str, PortfolioSnapshot] = {}
        for portfolio_id, stored in self._read_snapshots().items():
            where = f"{self.snapshot_file}: portfolio {portfolio_id!r}"
            snapshots[portfolio_id] = decode_stored_snapshot(
                json.dumps(stored), where=where, portfolio_id=portfolio_id
            )
        return snapshots

    def load_fills(self, portfolio_id: str | None = None) -> list[Fill]:
        return [
            fill
            for owner, fill in self._read_journal()
            if portfolio_id is None or owner == portfolio_id
        ]

    def load_fills_after(self, count: int) -> list[Fill]:
        """The fills after the first ``count`` (optional in the contract: the journal is
        append-only, so a reader that had ``count`` fills had exactly these first ones)."""
        return [fill for _, fill in self._read_journal()[journal_count(count) :]]

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Journal ``rejections``, one per signal (optional in the contract)."""
        lines: list[str] = []
        new_ids: set[UUID] = set()
        for rejection in rejections:
            signal_id = rejection.signal.event_id
            if signal_id in self._rejected or signal_id in new_ids:
                continue  # the signal's rejection is journaled already
            new_ids.add(signal_id)
            lines.append(rejection.model_dump_json() + "\n")
        self._append(self.rejections_file, lines)
        self._rejected |= new_ids

    def load_rejections(self, after: int = 0) -> list[Rejection]:
        """The journaled rejections after the first ``after``, in the order recorded."""
        skip = journal_count(after, "load_rejections", "rejections")
        lines = self._lines(self.rejections_file)
        return [
            decode_stored_rejection(line, where=f"{self.rejections_file} line {number}")
            for number, line in enumerate(lines, 1)
            if number > skip
        ]

    def count_rejections(self) -> int:
        """How many rejections the journal holds (optional in the contract)."""
        return len(self._lines(self.rejections_file))

    def save_metadata(self, items: dict[str, str]) -> None:
        """Keep ``items`` with the state: each key's latest value (optional in the contract)."""
        updated = {**self.load_metadata(), **check_metadata(items)}
        self._replace(self.metadata_file, json.dumps(updated, indent=1) + "\n")

    def load_metadata(self) -> dict[str, str]:
        stored = self._read_object(self.metadata_file)
        if not all(isinstance(value, str) for value in stored.values()):
            raise CorruptStateError(f"{self.metadata_file}: a value is not text")
        return stored

    # -- the files -----------------------------------------------------------------------

    def _lines(self, path: Path) -> list[str]:
        """The whole lines of a journal: each ends with its line break, and what follows the
        last one is a torn write."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptStateError(f"{path}: unreadable: {exc}") from exc
        return text.split("\n")[:-1]

    def _append(self, path: Path, lines: list[str]) -> None:
        """Append ``lines`` to the journal ``path`` and flush them to disk."""
        if not lines:
            return
        try:
            self._drop_a_torn_last_line(path)
            with path.open("a", encoding="utf-8") as file:
                file.write("".join(lines))
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise PersistenceError(f"cannot append to {path}: {exc}") from exc

    def _read_journal(self) -> list[tuple[str, Fill]]:
        fills: list[tuple[str, Fill]] = []
        for number, line in enumerate(self._lines(self.journal), 1):
            where = f"{self.journal} line {number}"
            try:
                record = json.loads(line)
                owner, raw = record["portfolio_id"], record["fill"]
                if not isinstance(owner, str) or not isinstance(raw, str):
                    raise TypeError("portfolio_id and fill must be text")
            except (ValueError, KeyError, TypeError) as exc:
                raise CorruptStateError(f"{where}: not a journaled fill: {exc}") from exc
            fills.append((owner, decode_stored_fill(raw, where=where, portfolio_id=owner)))
        return fills

    def _read_snapshots(self) -> dict[str, Any]:
        return self._read_object(self.snapshot_file)

    def _read_object(self, path: Path) -> dict[str, Any]:
        """The JSON object in ``path``; ``{}`` when there is no such file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptStateError(f"{path}: unreadable: {exc}") from exc
        try:
            stored = json.loads(text)
        except ValueError as exc:
            raise CorruptStateError(f"{path}: not JSON: {exc}") from exc
        if not isinstance(stored, dict):
            raise CorruptStateError(f"{path}: not a JSON object")
        return stored

    def _drop_a_torn_last_line(self, path: Path) -> None:
        """Cut a last line without its line break before writing after it: a write a crash
        interrupted, never acknowledged (the record method had not returned), so the pipeline
        journals that event again."""
        try:
            with path.open("rb") as file:
                if file.seek(0, os.SEEK_END) == 0:
                    return  # empty
                file.seek(-1, os.SEEK_END)
                if file.read(1) == b"\n":
                    return  # whole: only the last byte is read, not the journal
        except FileNotFoundError:
            return
        data = path.read_bytes()  # torn (after a crash): find the last whole line
        with path.open("r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)
            os.fsync(file.fileno())

    def _replace(self, target: Path, text: str) -> None:
        temporary = target.with_name(target.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)  # atomic: the old file or the new one
            folder = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself survives a power cut
            finally:
                os.close(folder)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise PersistenceError(f"cannot save {target}: {exc}") from exc
