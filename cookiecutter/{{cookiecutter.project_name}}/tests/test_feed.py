"""{{ cookiecutter.class_name }} against tradeloom's feed conformance suite, plus its own tests."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from tradeloom.testing.feeds import FeedConformance, collect_events

from {{ cookiecutter.package_name }} import {{ cookiecutter.class_name }}

LINES = [
    '{"ts": "2024-03-04T14:30:00Z", "instrument": "ACME", "price": "250.00", "quantity": "3"}',
    '{"ts": "2024-03-04T14:30:01Z", "instrument": "ACME", "price": "250.05"}',
    '{"ts": "2024-03-04T14:30:01Z", "instrument": "BETA", "price": "12.5"}',
    '{"ts": "2024-03-04T14:30:02+00:00", "instrument": "ACME", "price": "249.95"}',
]


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


class Test{{ cookiecutter.class_name }}Conformance(FeedConformance):
    expected_events = len(LINES)

    @pytest.fixture
    def feed(self, tmp_path: Path) -> {{ cookiecutter.class_name }}:
        return {{ cookiecutter.class_name }}(path=write(tmp_path / "ticks.jsonl", LINES))

    @pytest.fixture
    def bad_input_feed(self, tmp_path: Path) -> {{ cookiecutter.class_name }}:
        bad = [LINES[0], "not json", '{"ts": "2024-03-04T14:30:01Z", "price": "1"}', *LINES[1:]]
        return {{ cookiecutter.class_name }}(path=write(tmp_path / "bad.jsonl", bad))


def test_prices_are_exact_decimals(tmp_path: Path) -> None:
    run = collect_events({{ cookiecutter.class_name }}(path=write(tmp_path / "t.jsonl", LINES)))
    assert [str(tick.last_price) for tick in run.events] == ["250.00", "250.05", "12.5", "249.95"]
    assert run.events[0].last_quantity == Decimal(3)


def test_bad_lines_are_reported_with_their_line_number(tmp_path: Path) -> None:
    lines = [LINES[0], '{"ts": "2024-03-04T14:30:01Z", "instrument": "ACME", "price": 1.5}']
    run = collect_events({{ cookiecutter.class_name }}(path=write(tmp_path / "t.jsonl", lines)))
    assert len(run.events) == 1
    [letter] = run.dead_letters
    assert letter.location == "line 2"
    assert "float" in letter.reason


def test_instrument_override(tmp_path: Path) -> None:
    feed = {{ cookiecutter.class_name }}(path=write(tmp_path / "t.jsonl", LINES), instrument="X")
    assert {tick.instrument for tick in collect_events(feed).events} == {"X"}


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file not found"):
        {{ cookiecutter.class_name }}(path=str(tmp_path / "nope.jsonl"))
