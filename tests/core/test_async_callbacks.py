"""Strategy and validator callbacks are called synchronously: an ``async def`` or generator
callback, which would silently never run, is refused when the pipeline is built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tradeloom
from tradeloom.components import Validator
from tradeloom.errors import ConfigError
from tradeloom.events import Bar
from tradeloom.testing import bars

DATA = bars("X", [10, 11, 12])


class AsyncBar(tradeloom.Strategy):
    async def on_bar(self, bar: Bar, ctx: Any) -> None:
        ctx.buy(bar.instrument, 1)


class GeneratorFill(tradeloom.Strategy):
    def on_fill(self, fill: Any, ctx: Any) -> Iterator[None]:  # type: ignore[override]
        yield None


class AsyncValidator(Validator):
    async def validate(self, signal: Any, view: Any) -> None:  # type: ignore[override]
        return None


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (AsyncBar(), "strategy 's': on_bar is an async function, which the pipeline would call"),
        (GeneratorFill(), "strategy 's': on_fill is a generator function (it has a yield)"),
    ],
)
def test_an_async_or_generator_strategy_callback_is_refused(
    strategy: tradeloom.Strategy, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        tradeloom.backtest({}, events=DATA, strategies={"s": strategy})
    assert str(caught.value).startswith(expected)


def test_an_async_validator_is_refused() -> None:
    class Plugin:
        @tradeloom.hookimpl
        def tradeloom_register_validators(self) -> dict[str, Any]:
            return {"async_check": AsyncValidator}

    with pytest.raises(ConfigError, match="validator 'async_check': validate is an async"):
        tradeloom.backtest(
            {"validators": [{"name": "async_check"}]},
            events=DATA,
            strategies={"s": AsyncBar.__base__()},  # type: ignore[misc]
            plugins=[Plugin()],
        )
