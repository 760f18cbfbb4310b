"""The synchronous Python API called where an event loop already runs in the thread (a Jupyter
notebook, async code): the run gets a thread of its own and behaves as it does elsewhere."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

import tradeloom
from tradeloom import Strategy
from tradeloom.errors import StrategyError
from tradeloom.events import Bar
from tradeloom.runtime.results import RunResult
from tradeloom.strategy import StrategyContext
from tradeloom.testing import bars

PRICES = [str(100 + (n % 7) - (n % 3)) for n in range(60)]
CONFIG = {"persistence": {"name": "memory"}}


class Alternates(Strategy):
    """Buys one on a rising close, sells it on a falling one."""

    def __init__(self) -> None:
        self.previous: Decimal | None = None

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        held = ctx.position(bar.instrument) + ctx.open_quantity(bar.instrument)
        if self.previous is not None:
            if bar.close > self.previous and held == 0:
                ctx.buy(bar.instrument, 1)
            elif bar.close < self.previous and held > 0:
                ctx.sell(bar.instrument, 1)
        self.previous = bar.close


def _backtest(strategy: Strategy, prices: list[str] = PRICES) -> Any:
    return tradeloom.backtest(CONFIG, strategies={"s": strategy}, events=bars("X", prices))


def test_a_backtest_called_inside_a_running_loop_gives_the_same_result() -> None:
    alone = _backtest(Alternates())

    async def in_a_notebook_cell() -> Any:
        return _backtest(Alternates())

    inside = asyncio.run(in_a_notebook_cell())
    assert alone.fill_count > 4
    assert [(f.ts, f.side, f.price) for f in inside.fills] == [
        (f.ts, f.side, f.price) for f in alone.fills
    ]
    assert inside.final_equity == alone.final_equity


def test_an_error_of_the_run_is_raised_in_the_callers_thread() -> None:
    class Fails(Strategy):
        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            raise ValueError("no quotes today")

    async def in_a_notebook_cell() -> None:
        with pytest.raises(StrategyError, match="no quotes today") as caught:
            _backtest(Fails())
        assert isinstance(caught.value.__cause__, ValueError)

    asyncio.run(in_a_notebook_cell())
    assert not [t for t in threading.enumerate() if t.name == "tradeloom-run"]


def test_ctrl_c_interrupts_the_run_and_is_raised_once_it_has_stopped() -> None:
    class InterruptedLater(Alternates):
        seen = 0

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            super().on_bar(bar, ctx)
            self.seen += 1
            if self.seen == 5:
                _thread.interrupt_main()  # what Ctrl-C (or a notebook's interrupt) does
            time.sleep(0.001)

    strategy = InterruptedLater()
    results: list[RunResult] = []

    class KeepsTheResult:
        @tradeloom.hookimpl
        def tradeloom_pipeline_stopped(self, result: RunResult) -> None:
            results.append(result)

    async def in_a_notebook_cell() -> None:
        with pytest.raises(KeyboardInterrupt):
            tradeloom.backtest(
                CONFIG,
                strategies={"s": strategy},
                events=bars("X", PRICES * 20),
                plugins=[KeepsTheResult()],
            )

    # A loop of its own, as a notebook kernel has: asyncio.run() would take SIGINT itself.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(in_a_notebook_cell())
    finally:
        loop.close()
    assert 5 <= strategy.seen < len(PRICES) * 20
    [result] = results
    assert result.interrupted is not None
    assert result.market_events == strategy.seen
    assert not [t for t in threading.enumerate() if t.name == "tradeloom-run"]
