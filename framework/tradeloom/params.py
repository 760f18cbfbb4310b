"""What the configuration's sections and components' parameter models share: a boolean is
never taken for a number.

pydantic reads ``true`` as ``1`` for an ``int`` or a ``float`` field (its lax mode), so
``max_attempts = true`` would silently mean one attempt. A field that does not take a boolean
refuses one instead, with the field named, as any other bad value. Components that check their
own parameters (``**params`` into a model of their own) subclass :class:`ParamsModel`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationInfo, field_validator


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


class ParamsModel(BaseModel):
    """A pydantic model that refuses ``true`` and ``false`` for fields that are not booleans."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and not takes_bool(field.annotation):
                raise ValueError(
                    f"{str(value).lower()} is a boolean; it takes {type_name(field.annotation)}"
                )
        return value
