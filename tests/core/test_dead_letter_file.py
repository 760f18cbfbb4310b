"""The dead-letter file: every refused input appended as one JSON line, flushed at once; a
path that cannot be written is a configuration error before any input is read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

import tradeloom
from tradeloom.components import DeadLetter
from tradeloom.errors import ConfigError, DeadLetterError
from tradeloom.runtime.dead_letter_file import DeadLetterFile


def letter(raw: bytes) -> DeadLetter:
    return DeadLetter(
        source="replay",
        location="data.csv:3",
        reason="price is not a number",
        raw=raw,
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        error_type="schema",
    )


def test_letters_are_appended_as_json_lines_raw_kept_as_text_or_base64(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dead.jsonl"
    first = DeadLetterFile(path)
    first.write(letter(b"2024-01-02,abc"))
    first.close()
    second = DeadLetterFile(path)  # appends: an earlier run's letters stay
    second.write(letter(b"\xff\xfe"))
    second.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("raw") for line in lines] == ["2024-01-02,abc", None]
    assert lines[1]["raw_base64"] == "//4="
    assert lines[0]["location"] == "data.csv:3" and lines[0]["error_type"] == "schema"


def test_a_records_key_is_kept_as_text_or_base64(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = DeadLetterFile(path)
    for key in (b"ORCL", b"\xff", None):
        letters.write(attrs.evolve(letter(b"{"), key=key))
    letters.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line.get("key"), line.get("key_base64")) for line in lines] == [
        ("ORCL", None),
        (None, "/w=="),
        (None, None),
    ]


@pytest.mark.parametrize("kind", ["directory", "under a file"])
def test_a_path_that_cannot_be_appended_to_is_a_config_error(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path, reason = tmp_path, "it is a directory"
    else:
        (tmp_path / "file").write_text("")
        path, reason = tmp_path / "file" / "dead.jsonl", "File exists"
    with pytest.raises(ConfigError) as caught:
        DeadLetterFile(path)
    assert str(caught.value) == (
        f"pipeline.dead_letter_file {str(path)!r} cannot be opened for appending: {reason}"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
def test_a_dead_letter_that_cannot_be_written_stops_the_run_naming_the_file(
    tmp_path: Path,
) -> None:
    # It was the feed that seemed to fail ("feed ReplayFeed raised OSError: No space left"),
    # and closing the file raised again.
    data = tmp_path / "y.csv"
    data.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,1,2,1,2,2,10\n2024-01-03,x,2,1,2,2,10\n2024-01-04,1,2,1,2,2,10\n"
    )
    settings = {
        "pipeline": {"dead_letter_file": "/dev/full"},
        "feed": {
            "name": "replay",
            "params": {"path": str(data), "format": "yahoo", "instrument": "X"},
        },
        "strategies": [{"name": "sma_cross"}],
    }
    with pytest.raises(DeadLetterError) as caught:
        tradeloom.backtest(settings)
    assert str(caught.value) == (
        "pipeline.dead_letter_file '/dev/full' could not be written (No space left on device): "
        f"bad input from {data} line 3 (column 'Open': 'x' is not a number) could not be set "
        "aside there, so the run stops"
    )
