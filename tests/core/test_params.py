"""A boolean is never taken for a number: the configuration's sections and the parameter
models of components that check their own (``ParamsModel``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NewType, TypeVar

import pytest
from pydantic import BaseModel, Field, ValidationError

from tradeloom.params import ParamsModel, takes_bool


class Options(ParamsModel):
    count: int = 1
    delay: float = 0.5
    limit: Decimal | None = None
    bounded: Annotated[int, Field(ge=0)] = 0
    enabled: bool = True
    maybe: bool | None = None
    mode: Literal[True, "auto"] = "auto"
    anything: Any = None
    name: str = "x"


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("count", True, "int"),
        ("delay", False, "float"),
        ("bounded", True, "int"),
        ("limit", True, "Decimal | None"),
        ("name", False, "str"),
    ],
)
def test_a_boolean_for_a_field_that_is_not_one_is_refused(
    field: str, value: bool, kind: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Options(**{field: value})
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert f"{str(value).lower()} is a boolean; it takes {kind}" in error["msg"]


def test_fields_that_take_a_boolean_still_do() -> None:
    options = Options(enabled=False, maybe=True, mode=True, anything=False)
    assert (options.enabled, options.maybe, options.mode, options.anything) == (
        False,
        True,
        True,
        False,
    )


def test_numbers_and_numeric_text_are_read_as_before() -> None:
    options = Options(count="3", delay=2, limit="1.50", bounded=4)  # type: ignore[arg-type]
    assert (options.count, options.delay, options.limit, options.bounded) == (
        3,
        2.0,
        Decimal("1.50"),
        4,
    )


Flag = NewType("Flag", bool)
Count = NewType("Count", int)
AnyT = TypeVar("AnyT")
FlagT = TypeVar("FlagT", bound=bool)
NumberT = TypeVar("NumberT", int, float)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (bool, True),
        (Flag, True),
        (AnyT, True),
        (FlagT, True),
        (Count, False),
        (NumberT, False),
        (Any, True),
        (object, True),
        (bool | None, True),
        (Annotated[bool, "note"], True),
        (Literal["a", False], True),
        (int, False),
        (int | None, False),
        (Literal["a", 1], False),
        (Decimal, False),
    ],
)
def test_takes_bool(annotation: Any, expected: bool) -> None:
    assert takes_bool(annotation) is expected


class Tables(ParamsModel):
    columns: dict[str, str | int] | None = None
    indexes: list[int] = []
    steps: tuple[int, ...] = ()
    nested: dict[str, list[Decimal]] = {}
    flags: dict[str, bool] = {}
    loose: dict[str, Any] = {}
    untyped: dict = {}  # type: ignore[type-arg]
    pair: tuple[bool, int] = (False, 0)
    either: dict[str, int] | list[int] = {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "columns",
            {"ts": "ts", "last_price": True},
            "true is a boolean (at last_price); it takes str | int",
        ),
        ("indexes", [1, False], "false is a boolean (at [1]); it takes int"),
        ("steps", (1, 2, True), "true is a boolean (at [2]); it takes int"),
        ("nested", {"a": [Decimal(1), True]}, "true is a boolean (at a[1]); it takes Decimal"),
        ("pair", (True, True), "true is a boolean (at [1]); it takes int"),
        ("either", {"a": True}, "true is a boolean (at a); it takes int"),
        ("either", [1, False], "false is a boolean (at [1]); it takes int"),
    ],
)
def test_a_boolean_inside_a_table_or_list_of_numbers_is_refused(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Tables(**{field: value})
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert error["msg"] == f"Value error, {message}"


class Switches(BaseModel):
    enabled: bool = False


class Unions(ParamsModel):
    numbers_or_model: dict[str, int] | Switches | None = None
    numbers_or_anything: list[int] | Any = None
    numbers_or_path: list[int] | Path | None = None
    numbers_or_span: list[float] | timedelta | None = None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("numbers_or_path", [True], "true is a boolean (at [0]); it takes int"),
        ("numbers_or_span", [1.5, True], "true is a boolean (at [1]); it takes float"),
    ],
)
def test_a_union_member_no_list_can_be_does_not_let_a_boolean_through(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Unions(**{field: value})
    assert caught.value.errors()[0]["msg"] == f"Value error, {message}"


def test_a_union_member_that_may_take_the_whole_value_lets_it_through() -> None:
    # A model, or Any, may take {"enabled": true}: pydantic judges it, not the boolean check.
    unions = Unions(numbers_or_model={"enabled": True}, numbers_or_anything=[1, True])
    assert unions.numbers_or_model == Switches(enabled=True)
    assert unions.numbers_or_anything == [1, True]


def test_tables_and_lists_that_take_booleans_or_do_not_say_still_do() -> None:
    tables = Tables(
        flags={"a": True},
        loose={"a": False},
        untyped={"a": True},
        columns={"ts": "ts", "last_price": 2},
        indexes=[0, 1],
        pair=(True, 2),
    )
    assert tables.pair == (True, 2)
    assert (tables.flags, tables.loose, tables.untyped) == ({"a": True}, {"a": False}, {"a": True})
    assert (tables.columns, tables.indexes) == ({"ts": "ts", "last_price": 2}, [0, 1])
