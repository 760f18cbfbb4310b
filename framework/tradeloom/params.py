"""What the configuration's sections and components' parameter models share: a boolean is
never taken for a number.

pydantic reads ``true`` as ``1`` for an ``int`` or a ``float`` field (its lax mode), so
``max_attempts = true`` would silently mean one attempt. A field that does not take a boolean
refuses one instead, with the field named, as any other bad value. Components that check their
own parameters (``**params`` into a model of their own) subclass :class:`ParamsModel`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ValidationError, ValidationInfo, field_validator

from tradeloom.events import out_of_range
from tradeloom.suggestions import closest_name


def takes_bool(annotation: Any) -> bool:
    """Whether a field or parameter annotated so may be a boolean (``bool``, ``Any``,
    ``object``, a union or ``Literal`` with one, a ``NewType`` or ``TypeVar`` of one). Any
    other annotation (``int``, ``Decimal``, a class) takes no boolean."""
    if annotation is bool or annotation is Any or annotation is object:
        return True
    if isinstance(annotation, typing.TypeVar):
        constraints = annotation.__constraints__ or (annotation.__bound__ or object,)
        return any(takes_bool(constraint) for constraint in constraints)
    supertype = getattr(annotation, "__supertype__", None)  # a NewType
    if supertype is not None:
        return takes_bool(supertype)
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return takes_bool(arguments[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(takes_bool(argument) for argument in arguments)
    if origin is typing.Literal:
        return any(isinstance(argument, bool) for argument in arguments)
    return False


def type_name(annotation: Any) -> str:
    """A short name of an annotation for messages: ``int``, ``Decimal | None``, ``Path``."""
    text = annotation.__name__ if isinstance(annotation, type) else repr(annotation)
    # Without the modules: "pathlib.Path" (CPython 3.13: "pathlib._local.Path") is "Path".
    return _QUALIFIED.sub(r"\1", text)


_QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def problem_message(error: Mapping[str, Any]) -> str:
    """The message of one of a ``ValidationError``'s ``errors()``: a validator's own words
    without pydantic's ``"Value error, "`` in front of them."""
    message = str(error["msg"])
    if error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return message


Misplaced = tuple[tuple[Any, ...], Any]
"""Where a boolean sits that a parameter does not take (keys and indexes to it) and the
annotation that refuses it."""


def misplaced_bool(value: Any, annotation: Any) -> Misplaced | None:
    """Where ``value`` holds a boolean that ``annotation`` does not take, also inside tables
    and lists (``dict[str, int]``, ``list[int]``, ``tuple[int, str]`` by position, unions of
    them): the path to it (keys and indexes; empty for ``value`` itself) and the annotation
    that refuses it. None if there is none, or the annotation does not say what the table or
    list holds. Of a union, one member that takes the whole value is enough."""
    if isinstance(value, bool):
        return None if takes_bool(annotation) else ((), annotation)
    if not isinstance(value, Mapping | list | tuple):
        return None
    refused: Misplaced | None = None
    for member in _members(annotation):
        found = _misplaced_within(value, member)
        if found is _CANNOT_TAKE:
            continue  # None, a number, a list for a table: pydantic refuses it there anyway
        if found is None or found is _DOES_NOT_SAY:
            return None  # takes it whole, or may (Any, a model, a bare dict): pydantic judges
        refused = refused or found
    return refused


_DOES_NOT_SAY: Any = object()
_CANNOT_TAKE: Any = object()
_SCALARS = (type(None), bool, int, float, complex, str, bytes, Decimal)


def _members(annotation: Any) -> list[Any]:
    """The members of a union (of ``Annotated`` ones too), or the annotation itself."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _members(arguments[0])
    if origin is typing.Union or origin is types.UnionType:
        return [member for argument in arguments for member in _members(argument)]
    return [annotation]


def _misplaced_within(value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], member: Any) -> Any:
    """``misplaced_bool`` of the items of a table or list against one annotation that is not
    a union. ``_CANNOT_TAKE`` when the annotation cannot hold such a value (a number, text,
    None, a list annotation for a table, a tuple of another length); ``_DOES_NOT_SAY`` when
    it may but does not say what the items are (``Any``, a bare ``dict``, a model class)."""
    origin = typing.get_origin(member)
    arguments = typing.get_args(member)
    if member is Any or member is object:
        return _DOES_NOT_SAY
    if origin is typing.Literal or (isinstance(member, type) and issubclass(member, _SCALARS)):
        return _CANNOT_TAKE
    kind = origin if isinstance(origin, type) else member if isinstance(member, type) else None
    if kind is None:
        return _DOES_NOT_SAY  # Any, a TypeVar, a NewType...
    is_table = isinstance(value, Mapping)
    if issubclass(kind, Mapping | Sequence | AbstractSet):
        if issubclass(kind, Mapping) != is_table:
            return _CANNOT_TAKE  # a list annotation for a table, or the other way round
    elif issubclass(kind, BaseModel) or dataclasses.is_dataclass(kind):
        return _DOES_NOT_SAY  # built from a table: pydantic judges its fields
    else:
        return _CANNOT_TAKE  # a Path, a timedelta, an Enum: none is made from a table or list
    if not isinstance(origin, type) or not arguments:
        return _DOES_NOT_SAY
    items: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        if len(arguments) != 2:
            return _DOES_NOT_SAY
        items = [(key, (item, arguments[1])) for key, item in value.items()]
    else:
        if not issubclass(origin, Sequence | AbstractSet):
            return _DOES_NOT_SAY
        if issubclass(origin, tuple) and not (len(arguments) == 2 and arguments[1] is Ellipsis):
            if len(arguments) != len(value):
                return _CANNOT_TAKE  # the wrong length
            element_types: Sequence[Any] = arguments  # by position
        else:
            element_types = [arguments[0]] * len(value)
        items = list(enumerate(zip(value, element_types, strict=True)))
    for key, (item, element) in items:
        found = misplaced_bool(item, element)
        if found is not None:
            path, refusing = found
            return ((key, *path), refusing)
    return None


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of a validation error, by dotted field, on one line."""
    parts = []
    for item in error.errors()[:limit]:
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        parts.append(f"{field}: {problem_message(item)}")
    if error.error_count() > limit:
        parts.append(f"and {error.error_count() - limit} more")
    return "; ".join(parts)


def parameters_problem(what: str, error: ValidationError, model: type[BaseModel]) -> str:
    """``what: invalid parameters: PROBLEMS (accepted: ...)``, for a component that checks its
    parameters with ``model``: each problem by its dotted name, an unknown parameter as such
    with the accepted name closest to it (a field's alias, when it has one)."""
    accepted = [field.alias or name for name, field in model.model_fields.items()]
    problems = []
    for err in error.errors(include_url=False, include_input=False):
        loc = err["loc"]
        where = ".".join(str(part) for part in loc) or "parameters"
        if err["type"] == "extra_forbidden":
            close = closest_name(str(loc[-1]), accepted) if loc else None
            hint = f" (did you mean {close!r}?)" if close else ""
            problems.append(f"{where}: unknown parameter{hint}")
        else:
            problems.append(f"{where}: {problem_message(err)}")
    return f"{what}: invalid parameters: {'; '.join(problems)} (accepted: {', '.join(accepted)})"


class ParamsModel(BaseModel):
    """A pydantic model that refuses ``true`` and ``false`` for fields that are not booleans,
    and inside tables and lists that do not hold booleans."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None or (
            type(value) is not bool and not isinstance(value, Mapping | list | tuple)
        ):
            return value
        field = cls.model_fields.get(info.field_name)
        found = misplaced_bool(value, field.annotation) if field is not None else None
        if found is not None:
            path, refusing = found
            boolean = "a boolean" if not path else f"a boolean (at {_where(path)})"
            spelled = str(_at(value, path)).lower()
            raise ValueError(f"{spelled} is {boolean}; it takes {type_name(refusing)}")
        return value


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _refuse_inexact(value: Any) -> Any:
    if isinstance(value, float | bool):
        raise ValueError(_inexact_message("", value))
    return value


def _inexact_message(where: str, value: Any) -> str:
    subject = f"{where} must" if where else "must"
    if isinstance(value, bool):
        return f"{subject} be a number, not the boolean {value}"
    return (
        f"{subject} be a Decimal, an int or a numeric string, not the float {value!r} "
        f'(floats are inexact; write it as a string, e.g. "{value}")'
    )


DecimalParam = Annotated[Decimal, BeforeValidator(_refuse_inexact)]
"""A parameter given as a Decimal, an int or a numeric string; floats and booleans are refused.

The annotation lets the runtime's parameter check refuse floats too, before the constructor runs.
"""


def decimal_param(value: Any, *, where: str, positive: bool = False) -> Decimal:
    """``value`` (a Decimal, an int or a numeric string) as a finite Decimal in the range
    events take, at least zero (greater than zero with ``positive``); a ValueError naming
    ``where`` otherwise. For components that check the parameters they are built with: the
    configuration reads them through the annotations, Python code passes them directly."""
    if isinstance(value, float | bool):
        raise ValueError(_inexact_message(where, value))
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    else:
        what = "None" if value is None else type(value).__name__
        raise ValueError(f"{where} must be a Decimal, an int or a numeric string, not {what}")
    if not number.is_finite():
        raise ValueError(f"{where} must be a finite number, got {number}")
    if positive and number <= 0:
        raise ValueError(f"{where} must be greater than zero, got {number}")
    if number < 0:
        raise ValueError(f"{where} must be zero or more, got {number}")
    problem = out_of_range(number)
    if problem is not None:
        raise ValueError(f"{where} {problem}")
    return number
