"""Runtime rules: prices awaited, no look-ahead, fill modes, validators, nothing dropped."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import anyio
import pytest

import tradeloom
from tradeloom import Pipeline, Strategy, make_settings
from tradeloom.components import Feed, FeedContext
from tradeloom.errors import ConfigError, FeedError
from tradeloom.events import Bar, MarketTick
from tradeloom.runtime.stages import StrategyError
from tradeloom.strategy import StrategyContext
from tradeloom.testing import bars, merge, run_strategy, ticks
from tradeloom_sqlite.persistence import SqlitePersistence


class BuyOnFirst(Strategy):
    """Buys ``instrument`` once, on the first event of ``trigger``."""

    def __init__(
        self, instrument: str, trigger: str, quantity: str = "1", limit: str | None = None
    ):
        self.instrument, self.trigger, self.quantity, self.limit = (
            instrument,
            trigger,
            quantity,
            limit,
        )
        self.sent = False
        self.rejections: list[str] = []
        self.fills: list[Decimal] = []

    def _maybe(self, event, ctx):  # type: ignore[no-untyped-def]
        if not self.sent and event.instrument == self.trigger:
            self.sent = True
            ctx.buy(self.instrument, self.quantity, limit_price=self.limit)

    on_bar = on_tick = _maybe

    def on_fill(self, fill, ctx):  # type: ignore[no-untyped-def]
        self.fills.append(fill.price)

    def on_rejection(self, rejection, ctx):  # type: ignore[no-untyped-def]
        self.rejections.append(rejection.reason)


def test_market_order_fills_at_the_next_bar_open_never_the_current_one() -> None:
    data = bars("X", ["10", "11", "12"], opens=["9", "10.5", "11.5"])
    strategy = BuyOnFirst("X", "X")
    result = run_strategy(strategy, data)
    assert [f.price for f in result.fills] == [Decimal("10.5")]
    assert result.fills[0].ts == data[1].ts


def test_fill_at_last_fills_immediately_with_slippage_and_commission() -> None:
    strategy = BuyOnFirst("X", "X", quantity="4")
    result = run_strategy(
        strategy, ticks("X", ["100", "101"]), fill_at="last", slippage_bps=10, commission_bps=5
    )
    fill = result.fills[0]
    assert fill.price == Decimal("100.100") and fill.ts == ticks("X", ["1"])[0].ts
    assert fill.commission == Decimal(4) * Decimal("100.100") * Decimal("0.0005")


def test_signal_without_a_price_waits_for_the_first_one_then_executes() -> None:
    strategy = BuyOnFirst("Y", "X")
    data = merge(
        ticks("X", ["10", "10", "10"]),
        ticks("Y", ["50", "51"], start=ticks("X", ["1", "1"])[1].ts + timedelta(milliseconds=500)),
    )
    result = run_strategy(
        strategy,
        data,
        fill_at="last",
        validators=[{"name": "max_order_notional", "params": {"limit": "1000"}}],
    )
    assert [(f.instrument, f.price) for f in result.fills] == [("Y", Decimal(50))]
    assert not result.rejections


def test_signal_waiting_too_long_becomes_a_rejection_with_a_reason() -> None:
    strategy = BuyOnFirst("Y", "X")
    x = ticks("X", ["10"] * 5, interval=timedelta(seconds=30))
    y = ticks("Y", ["50"], start=x[-1].ts + timedelta(seconds=1))
    result = run_strategy(
        strategy,
        merge(x, y),
        validators=[{"name": "max_order_notional", "params": {"limit": "1000"}}],
        config={"pending": {"max_wait_seconds": 60}},
    )
    assert not result.fills
    assert [r.validator for r in result.rejections] == ["pending"]
    assert "no price for Y within 60s" in result.rejections[0].reason
    assert strategy.rejections == [result.rejections[0].reason]


def test_signal_still_waiting_when_input_ends_is_rejected_not_dropped() -> None:
    strategy = BuyOnFirst("Y", "X")
    result = run_strategy(
        strategy,
        ticks("X", ["10", "10"]),
        validators=[{"name": "price_band", "params": {"max_deviation_bps": "50"}}],
    )
    assert [r.reason for r in result.rejections] == [
        "input ended before a first price for Y arrived"
    ]


def test_too_many_waiting_signals_are_rejected() -> None:
    class Spray(Strategy):
        def on_tick(self, tick, ctx):  # type: ignore[no-untyped-def]
            ctx.buy("Y", 1)

    result = run_strategy(
        Spray(),
        ticks("X", ["10"] * 5),
        validators=[{"name": "max_order_notional", "params": {"limit": "1000"}}],
        config={"pending": {"max_signals": 2, "max_wait_seconds": 3600}},
    )
    reasons = [r.reason for r in result.rejections]
    assert len(reasons) == 5
    assert sum("2 signals already wait" in r for r in reasons) == 3
    assert sum("input ended" in r for r in reasons) == 2


def test_validator_rejection_reaches_the_strategy_and_no_order_is_sent() -> None:
    strategy = BuyOnFirst("X", "X", quantity="500")
    result = run_strategy(
        strategy,
        ticks("X", ["10", "11"]),
        validators=[{"name": "max_position", "params": {"limit": "100"}}],
    )
    assert not result.fills
    assert result.rejections[0].validator == "max_position"
    assert "exceed limit 100" in result.rejections[0].reason
    assert strategy.rejections == [result.rejections[0].reason]


def test_unfilled_limit_order_is_rejected_at_the_end() -> None:
    strategy = BuyOnFirst("X", "X", limit="5")
    result = run_strategy(strategy, bars("X", ["10", "9", "8"]))
    assert not result.fills
    assert result.rejections[0].validator == "paper"
    assert "limit order not filled" in result.rejections[0].reason


def test_limit_order_fills_at_the_limit_when_the_bar_reaches_it() -> None:
    strategy = BuyOnFirst("X", "X", limit="9.5")
    result = run_strategy(strategy, bars("X", ["10", "9", "8"], opens=["10", "10", "9"]))
    assert [f.price for f in result.fills] == [Decimal("9.5")]


def test_a_strategy_that_raises_stops_the_run_with_its_name_and_event() -> None:
    class Broken(Strategy):
        def on_bar(self, bar, ctx):  # type: ignore[no-untyped-def]
            raise ZeroDivisionError("oops")

    with pytest.raises(
        StrategyError, match=r"strategy 'broken' raised on bar .* ZeroDivisionError: oops"
    ):
        run_strategy({"broken": Broken()}, bars("X", ["1"]))


def test_a_strategy_calling_sys_exit_fails_the_run_as_its_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SystemExit went through every stage: the command ended with the strategy's status and
    # no word, the state saved but no result written and no note on resuming.
    class Quits(Strategy):
        def on_bar(self, bar, ctx):  # type: ignore[no-untyped-def]
            if not ctx.position("X"):
                ctx.buy("X", 1)
            else:
                sys.exit(4)

    settings = {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    with pytest.raises(StrategyError, match=r"strategy 'quits' raised on bar .*: SystemExit: 4"):
        tradeloom.backtest(
            settings, events=bars("X", ["1", "2", "3"]), strategies={"quits": Quits()}
        )

    class QuitsAtStop(Strategy):
        def on_stop(self, ctx):  # type: ignore[no-untyped-def]
            raise SystemExit("bye")

    with pytest.raises(StrategyError, match=r"raised in on_stop: SystemExit: bye"):
        run_strategy({"s": QuitsAtStop()}, bars("X", ["1"]))


def test_float_quantities_from_strategy_code_are_refused() -> None:
    class FloatBuyer(Strategy):
        def on_bar(self, bar, ctx):  # type: ignore[no-untyped-def]
            ctx.buy("X", 0.1)

    with pytest.raises(StrategyError, match=r"float 0\.1 is not accepted"):
        run_strategy(FloatBuyer(), bars("X", ["1"]))


def test_10000_orders_on_one_instrument_get_distinct_time_sortable_ids() -> None:
    class EveryTick(Strategy):
        def on_tick(self, tick, ctx):  # type: ignore[no-untyped-def]
            ctx.buy(tick.instrument, 1)

    result = run_strategy(
        EveryTick(), ticks("X", ["10"] * 10_000), fill_at="last", starting_cash=10_000_000
    )
    order_ids = [fill.order_id for fill in result.fills]
    assert len(order_ids) == 10_000
    assert len(set(order_ids)) == 10_000
    assert order_ids == sorted(order_ids)  # minted in order, so they sort by creation time
    assert all(order_id.version == 7 for order_id in order_ids)
    assert result.snapshots["strategy"].positions["X"].quantity == 10_000


def test_plugins_hear_pipeline_stopped_even_when_a_strategy_fails() -> None:
    from tradeloom import hookimpl

    heard: list[str] = []

    class Listener:
        @hookimpl
        def tradeloom_pipeline_stopped(self, pipeline, result):  # type: ignore[no-untyped-def]
            heard.append("stopped")

    class Broken(Strategy):
        def on_bar(self, bar, ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    with pytest.raises(StrategyError):
        run_strategy(Broken(), bars("X", ["1"]), plugins=[Listener()])
    assert heard == ["stopped"]


def test_event_observers_see_every_stage_in_and_out() -> None:
    from collections import Counter

    from tradeloom import hookimpl

    seen: Counter[tuple[str, str, str]] = Counter()

    class Observer:
        @hookimpl
        def tradeloom_event_observed(self, stage, direction, event):  # type: ignore[no-untyped-def]
            seen[(stage, direction, event.type)] += 1

    strategy = BuyOnFirst("X", "X")
    run_strategy(strategy, bars("X", ["10", "11", "12"]), plugins=[Observer()])
    assert seen[("feed", "out", "bar")] == 3
    assert seen[("strategy", "in", "bar")] == 3
    assert seen[("strategy", "out", "signal")] == 1
    assert seen[("risk", "in", "signal")] == 1
    assert seen[("risk", "out", "order")] == 1
    assert seen[("execution", "in", "order")] == 1
    assert seen[("execution", "out", "fill")] == 1
    assert seen[("portfolio", "in", "fill")] == 1


def test_state_is_saved_when_a_strategy_fails_mid_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tradeloom_sqlite.persistence import SqlitePersistence

    class BuyThenBreak(Strategy):
        def on_bar(self, bar, ctx):  # type: ignore[no-untyped-def]
            if ctx.position("X") == 0:
                ctx.buy("X", 2)
            elif bar.close == Decimal(14):
                raise RuntimeError("bug in bar 5")

    db = tmp_path / "state.sqlite"
    with pytest.raises(StrategyError, match="bug in bar 5"):
        run_strategy(
            {"s": BuyThenBreak()},
            bars("X", ["10", "11", "12", "13", "14", "15"]),
            config={"persistence": {"name": "sqlite", "params": {"path": str(db)}}},
        )
    store = SqlitePersistence(path=str(db))
    store.open()
    assert [f.quantity for f in store.load_fills()] == [Decimal(2)]
    assert store.load_snapshots()["s"].positions["X"].quantity == 2
    store.close()


def _run_with_validator(validate: Callable[[], Any]) -> Any:
    """``BuyOnFirst`` through one validator, ``"v"``, whose ``validate`` calls ``validate()``."""
    from tradeloom import hookimpl
    from tradeloom.components import Validator

    class Judge(Validator):
        def validate(self, signal, view):  # type: ignore[no-untyped-def]
            return validate()

    class Plugin:
        @hookimpl
        def tradeloom_register_validators(self):  # type: ignore[no-untyped-def]
            return {"v": Judge}

    return run_strategy(
        BuyOnFirst("X", "X"), bars("X", ["1", "2"]), validators=[{"name": "v"}], plugins=[Plugin()]
    )


def test_a_validator_that_raises_is_named_and_not_blamed_on_the_strategy() -> None:
    from tradeloom.errors import StageError

    def broken() -> None:
        raise KeyError("missing")

    with pytest.raises(StageError) as caught:
        _run_with_validator(broken)
    assert not isinstance(caught.value, StrategyError)
    assert "validator 'v' raised on signal" in str(caught.value)


@pytest.mark.parametrize("returned", [True, False, 0, "", "  ", b"too much", {"ok": False}])
def test_a_validator_returning_what_is_no_reason_is_named(returned: Any) -> None:
    from tradeloom.errors import StageError

    with pytest.raises(StageError) as caught:
        _run_with_validator(lambda: returned)
    assert f"validator 'v' returned {returned!r} for signal" in str(caught.value)
    assert "validate() returns None to let a signal trade" in str(caught.value)


def test_a_validator_may_give_its_reason_as_a_string_enum() -> None:
    import enum

    class Reason(enum.StrEnum):
        TOO_BIG = "order too big"

    result = _run_with_validator(lambda: Reason.TOO_BIG)
    assert [r.reason for r in result.rejections] == ["order too big"]


def test_a_signal_without_a_price_waits_bounded_even_with_no_validators() -> None:
    strategy = BuyOnFirst("Y", "X")
    x = ticks("X", ["10"] * 3, interval=timedelta(minutes=1))
    y = ticks("Y", ["50"], start=x[-1].ts + timedelta(hours=2))
    result = run_strategy(
        strategy, merge(x, y), fill_at="last", config={"pending": {"max_wait_seconds": 60}}
    )
    assert not result.fills
    assert "no price for Y within 60s" in result.rejections[0].reason


def test_every_strategy_gets_on_stop_even_when_one_raises() -> None:
    stopped: list[str] = []

    class Stops(Strategy):
        def __init__(self, name: str, fail: bool) -> None:
            self.name, self.fail = name, fail

        def on_stop(self, ctx):  # type: ignore[no-untyped-def]
            stopped.append(self.name)
            if self.fail:
                raise ValueError("cannot stop")

    with pytest.raises(StrategyError, match="on_stop"):
        run_strategy({"a": Stops("a", True), "b": Stops("b", False)}, bars("X", ["1"]))
    assert stopped == ["a", "b"]


def test_split_roles_need_a_transport_between_processes() -> None:
    from tradeloom import Pipeline, make_settings
    from tradeloom.errors import ConfigError

    with pytest.raises(ConfigError, match="runs every role"):
        Pipeline(
            make_settings({"strategies": [{"name": "sma_cross"}]}),
            mode="live",
            roles=["strategy"],
            events=[],
        )


def test_test_helpers_refuse_floats_and_merge_config_with_their_arguments() -> None:
    with pytest.raises(TypeError, match="not exact"):
        bars("X", [11.2])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not exact"):
        ticks("X", [0.1])  # type: ignore[list-item]
    result = run_strategy(
        BuyOnFirst("X", "X"),
        bars("X", ["10", "11"]),
        starting_cash=5000,
        commission_bps=100,
        config={"portfolio": {"snapshot_interval_seconds": 1}, "executor": {"name": "paper"}},
    )
    assert result.starting_equity == 5000
    assert result.fills[0].commission == Decimal("0.10")


def test_an_order_never_fills_from_a_bar_that_began_before_it() -> None:
    # Y has minute bars; an X tick at 00:01:01 makes the strategy buy Y. The Y bar that ends
    # at 00:02 began at 00:01, before the order: its open is in the order's past.
    start = ticks("X", ["1"])[0].ts
    y = bars(
        "Y",
        ["50", "60", "70"],
        opens=["49", "55", "65"],
        start=start,
        interval=timedelta(minutes=1),
    )  # [00:00,00:01) [00:01,00:02) [00:02,00:03)
    x = ticks("X", ["10"], start=start + timedelta(seconds=61))
    strategy = BuyOnFirst("Y", "X")
    result = run_strategy(strategy, [y[0], x[0], y[1], y[2]], fill_at="next")
    assert [f.price for f in result.fills] == [Decimal(65)]


def test_a_resting_limit_order_never_fills_from_an_earlier_bar_in_last_mode() -> None:
    # Daily Y bars; the order rests from midday of day 1. Day 1's bar (which dipped to 8,
    # perhaps in the morning) began before the order and must not fill it.
    start = ticks("X", ["1"])[0].ts
    y = bars("Y", ["10", "10", "12"], opens=["10", "10", "12"], start=start)
    day1 = y[1].model_copy(update={"low": Decimal(8)})
    midday = ticks("X", ["10"], start=y[0].ts + timedelta(hours=12))
    strategy = BuyOnFirst("Y", "X", limit="9")
    result = run_strategy(strategy, [y[0], midday[0], day1, y[2]], fill_at="last")
    assert not result.fills
    assert "limit order not filled" in result.rejections[0].reason


def test_a_live_run_over_replayed_data_fills_like_the_backtest(tmp_path, shared_data) -> None:  # type: ignore[no-untyped-def]
    import tradeloom

    def config(name: str) -> dict:  # type: ignore[type-arg]
        return {
            "feed": {
                "name": "replay",
                "params": {
                    "path": str(shared_data / "orcl-1995-2014.txt"),
                    "format": "yahoo",
                    "instrument": "ORCL",
                },
            },
            "strategies": [{"name": "sma_cross"}],
            "executor": {"name": "paper", "params": {"fill_at": "next"}},
            "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / name)}},
        }

    live = tradeloom.run(config("live.sqlite"))
    replayed = tradeloom.backtest(config("backtest.sqlite"))
    assert live.trade_count == replayed.trade_count == 195
    assert [f.price for f in live.fills] == [f.price for f in replayed.fills]


def pipeline_warnings(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    """What the pipeline itself warned of (not its stages, such as the paper trader's
    refusals at the end of input)."""
    return [r.getMessage() for r in caplog.records if r.name == "tradeloom.pipeline"]


@pytest.mark.parametrize("paced", [False, True])
def test_a_live_run_replaying_its_feed_over_stored_state_warns(
    tmp_path, shared_data, caplog, paced
) -> None:  # type: ignore[no-untyped-def]
    import tradeloom

    data = tmp_path / "orcl.csv"
    lines = (shared_data / "orcl-1995-2014.txt").read_text().splitlines()
    data.write_text("\n".join(lines[:40]) + "\n")  # two months of bars
    config = {
        "feed": {
            "name": "replay",
            "params": {
                "path": str(data),
                "format": "yahoo",
                "instrument": "ORCL",
                # An async feed (a live broker's is one too): the same check at its first event.
                **({"speed": 1e9} if paced else {}),
            },
        },
        "strategies": [{"name": "sma_cross", "params": {"fast": 2, "slow": 5}}],
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "live.sqlite")}},
    }
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        first = tradeloom.run(config)
        assert first.fills and pipeline_warnings(caplog) == []
        tradeloom.run(config)
    (warning,) = pipeline_warnings(caplog)
    # A live run's state is stamped with the wall clock; a bar's time is its end.
    assert re.fullmatch(
        r"this live run carries on from stored state that reaches 20\d\d-[^,]+\+00:00, "
        r"later than its first market event \(1995-01-04T00:00:00\+00:00\): a feed replayed "
        "from the start trades those events again on top of that state; start from a new "
        "state file",
        warning,
    )


def test_a_live_run_on_a_backtests_state_warns_only_of_data_before_it(
    tmp_path, shared_data, caplog
) -> None:  # type: ignore[no-untyped-def]
    import tradeloom

    lines = (shared_data / "orcl-1995-2014.txt").read_text().splitlines()
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    before.write_text("\n".join(lines[:60]) + "\n")
    after.write_text("\n".join([lines[0], *lines[60:90]]) + "\n")

    state = tmp_path / "s.sqlite"
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        tradeloom.backtest(orcl_replay(before, state))
        tradeloom.run(orcl_replay(after, state))  # goes on after the backtest: no warning
        assert pipeline_warnings(caplog) == []
        tradeloom.run(orcl_replay(before, state))
    (warning,) = pipeline_warnings(caplog)
    # The state is the live run's now (stamped with the wall clock): no backtest resumes it.
    assert "later than its first market event (1995-01-04T00:00:00+00:00)" in warning
    assert warning.endswith("top of that state; start from a new state file")


class LiveSource(Feed):
    """One tick of 2024 on every run: a live source's first tick may be older than the last
    checkpoint (the last quote of a closed market, a tick read again after a crash)."""

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        yield MarketTick(
            event_id=ctx.ids.new_id(),
            ts=datetime(2024, 1, 2, tzinfo=UTC),
            instrument="X",
            last_price=Decimal(10),
        )


class AsyncReplay(LiveSource):
    replays_from_start = True


def orcl_replay(data, state):  # type: ignore[no-untyped-def]
    """sma_cross(2, 5) on the yahoo bars of ``data``, state in the sqlite file ``state``."""
    return {
        "feed": {
            "name": "replay",
            "params": {"path": str(data), "format": "yahoo", "instrument": "ORCL"},
        },
        "strategies": [{"name": "sma_cross", "params": {"fast": 2, "slow": 5}}],
        "persistence": {"name": "sqlite", "params": {"path": str(state)}},
    }


def orcl_bars(shared_data, tmp_path, count: int):  # type: ignore[no-untyped-def]
    """:func:`orcl_replay` of the first ``count`` ORCL bars, state in ``s.sqlite``."""
    lines = (shared_data / "orcl-1995-2014.txt").read_text().splitlines()
    path = tmp_path / f"orcl-{count}.csv"
    path.write_text("\n".join(lines[: count + 1]) + "\n")
    return orcl_replay(path, tmp_path / "s.sqlite")


def test_a_live_run_over_a_backtests_state_says_how_to_continue_the_backtest(
    tmp_path, shared_data, caplog
) -> None:  # type: ignore[no-untyped-def]
    config = orcl_bars(shared_data, tmp_path, 60)
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        assert tradeloom.backtest(config).fills
        tradeloom.run(config)
    (warning,) = pipeline_warnings(caplog)
    assert warning.endswith(
        "top of that state; to continue that backtest after its stored state, backtest with "
        "--resume; or start from a new state file"
    )


@pytest.mark.parametrize("first", ["live", "wall-clock backtest"])
def test_a_backtest_does_not_resume_state_stamped_with_the_wall_clock(
    tmp_path, shared_data, first
) -> None:  # type: ignore[no-untyped-def]
    config = orcl_bars(shared_data, tmp_path, 60)
    if first == "live":
        assert tradeloom.run(config).fills
    else:
        assert tradeloom.backtest({**config, "pipeline": {"clock": "wall"}}).fills
    with pytest.raises(ConfigError) as refused:
        tradeloom.backtest(config, resume=True)
    assert "holds state stamped with the wall clock (a live run's, or a backtest's on the " in (
        str(refused.value)
    )
    assert str(refused.value).endswith(
        "so a backtest cannot resume from it: it would skip all of the data; continue a live "
        "run's state with tradeloom run, or backtest from a new state file"
    )


@pytest.mark.parametrize("feed", [LiveSource, AsyncReplay])
def test_only_an_async_feed_that_replays_from_the_start_is_warned_about(
    tmp_path, caplog, feed
) -> None:  # type: ignore[no-untyped-def]
    # The stored state of a live run is stamped with the wall clock, later than the tick.
    settings = make_settings(
        {"persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}}}
    )
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        for _ in range(2):
            strategies = {"buys": BuyOnFirst("X", "X")}
            anyio.run(Pipeline(settings, mode="live", feed=feed(), strategies=strategies).run)
    warned = [m for m in pipeline_warnings(caplog) if "later than its first market" in m]
    assert len(warned) == (1 if feed.replays_from_start else 0)


def test_a_strategy_error_keeps_the_strategy_exception_as_its_cause() -> None:
    class Dividing(Strategy):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            tick.last_price / 0

    with pytest.raises(StrategyError) as caught:
        tradeloom.backtest(strategies={"div": Dividing()}, events=ticks("X", ["10"]))
    cause = caught.value.__cause__
    assert isinstance(cause, ArithmeticError)
    assert cause.__traceback__ is not None
    frames = traceback.extract_tb(cause.__traceback__)
    assert frames[-1].name == "on_tick" and frames[-1].filename == __file__


class Redelivering(Feed):
    """An async feed that hands out some ticks twice, as a broker feed may after a crash."""

    def __init__(self, events: list[MarketTick]) -> None:
        self.given = events

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        for index, tick in enumerate(self.given):
            yield tick
            if index % 3 == 0:
                yield tick  # the same event, the same id


class Counting(Strategy):
    def __init__(self) -> None:
        self.seen: list[UUID] = []

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        self.seen.append(tick.event_id)


@pytest.mark.parametrize("window", [100, 0])
def test_a_live_feed_handing_out_an_event_again_is_deduplicated_by_id(window: int) -> None:
    events = ticks("X", [str(10 + i) for i in range(10)])
    strategy = Counting()
    settings = make_settings({"pipeline": {"dedupe_window": window}})
    pipeline = Pipeline(
        settings, mode="live", feed=Redelivering(events), strategies={"count": strategy}
    )
    result = anyio.run(pipeline.run)
    repeats = len(range(0, 10, 3))
    if window:
        assert strategy.seen == [tick.event_id for tick in events]
        assert result.duplicates_ignored == repeats
        assert result.market_events == 10
    else:  # dedupe_window = 0 turns it off
        assert len(strategy.seen) == 10 + repeats
        assert result.duplicates_ignored == 0


def test_names_that_match_nothing_in_the_run_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both typos used to pass silently: the strategy never traded, its portfolio started with
    # the default cash.
    config = {
        "strategies": [{"name": "sma_cross", "id": "sma", "instruments": ["orcl", "MSFT"]}],
        "portfolio": {"starting_cash": "1000", "starting_cash_by_portfolio": {"SMA": "5000"}},
        "persistence": {"name": "memory"},
    }
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        result = tradeloom.backtest(config, events=bars("ORCL", ["10", "11", "12"]))
    assert result.starting_equity == Decimal("1000")
    assert caplog.messages == [
        "portfolio.starting_cash_by_portfolio names 'SMA', which is not a portfolio of this "
        "run (did you mean 'sma'?); portfolios are strategy ids: sma",
        "strategy 'sma' asked for instruments that no market event carried: MSFT, "
        "orcl (did you mean ORCL?); instruments in the data: ORCL",
    ]
    caplog.clear()
    config["strategies"][0]["instruments"] = ["ORCL"]  # type: ignore[index]
    config["portfolio"]["starting_cash_by_portfolio"] = {"sma": "5000"}  # type: ignore[index]
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        result = tradeloom.backtest(config, events=bars("ORCL", ["10", "11", "12"]))
    assert result.starting_equity == Decimal("5000")
    assert caplog.messages == []


def test_a_backtest_with_no_market_events_says_so(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import tradeloom

    def backtest(text: str) -> None:
        data = tmp_path / "bars.csv"
        data.write_text(text)
        params = {"path": str(data), "format": "yahoo", "instrument": "X"}
        tradeloom.backtest(
            {"feed": {"name": "replay", "params": params}, "strategies": [{"name": "sma_cross"}]}
        )

    header = "Date,Open,High,Low,Close,Adj Close,Volume\n"
    with caplog.at_level("WARNING", logger="tradeloom.pipeline"):
        backtest(header)
        backtest(header + "1995-01-03,x,1,1,1,1,100\n1995-01-04,2,2,2,2,2,y\n")
    assert [m for m in caplog.messages if m.startswith("the feed")] == [
        "the feed delivered no market events: nothing was backtested",
        "the feed delivered no market events (2 input(s) were bad, see the dead letters): "
        "nothing was backtested",
    ]


def test_progress_adds_up_to_the_market_events() -> None:
    # Three instruments share each time, so blocks end past 1,024 events (the rest of their
    # last time): progress must still count every event once.
    closes = [str(100 + day % 7) for day in range(1500)]
    data = merge(*(bars(name, closes) for name in ("AAA", "BBB", "CCC")))
    reported: list[int] = []
    pipeline = Pipeline(
        make_settings({}), events=data, strategies={"idle": Strategy()}, progress=reported.append
    )
    result = anyio.run(pipeline.run)
    assert result.market_events == 4500
    assert sum(reported) == 4500 and len(reported) > 1


class _StartTime(Strategy):
    def __init__(self) -> None:
        self.started_at: object = None

    def on_start(self, ctx: StrategyContext) -> None:
        self.started_at = ctx.now()


class AsyncEvents(Feed):
    """An async feed of the given events; ``closed`` once its generator is closed."""

    def __init__(self, events: list[MarketTick]) -> None:
        self.given = events
        self.closed = False

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        try:
            for tick in self.given:
                await anyio.sleep(0)
                yield tick
        finally:
            self.closed = True


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_on_start_sees_the_datas_first_time_in_a_backtest(kind: str) -> None:
    data = ticks("X", ["10", "11"])
    strategy = _StartTime()
    if kind == "plain":
        run_strategy(strategy, data)
    else:
        result = tradeloom.backtest(
            {"persistence": {"name": "memory"}}, strategies={"s": strategy}, feed=AsyncEvents(data)
        )
        assert result.market_events == 2 and result.first_event_time == data[0].ts
    assert strategy.started_at == data[0].ts


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_resumed_backtest_starts_where_the_data_starts_and_trades_after_the_state(
    tmp_path, kind
) -> None:  # type: ignore[no-untyped-def]
    # on_start sees the data's first time, as in the run that stored the state; the events
    # that state holds warm the strategy up (tests/recovery/test_warm_up.py), the rest trade.
    data = ticks("X", ["10", "11", "12", "13"])
    state = {"name": "sqlite", "params": {"path": str(tmp_path / "state.db")}}
    tradeloom.backtest(
        {"persistence": state, "strategies": [{"name": "sma_cross", "id": "s"}]},
        events=data[:2],
    )
    strategy = _StartTime()
    given: dict[str, Any] = {"events": data} if kind == "plain" else {"feed": AsyncEvents(data)}
    result = tradeloom.backtest(
        {"persistence": state}, strategies={"s": strategy}, resume=True, **given
    )
    assert result.skipped_events == 2 and result.market_events == 2
    assert strategy.started_at == data[0].ts
    assert result.first_event_time == data[2].ts


def test_a_backtest_waiting_for_an_async_feeds_first_event_can_be_stopped() -> None:
    waiting = anyio.Event()

    class Silent(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
            waiting.set()
            await anyio.sleep_forever()
            yield  # an async generator

    strategy = _Lifecycle()
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode="backtest",
        feed=Silent(),
        strategies={"s": strategy},
    )

    async def main() -> Any:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(10):
                await waiting.wait()
            pipeline.stop()

    anyio.run(main)
    assert pipeline.result.market_events == 0 and pipeline.result.interrupted is None
    assert strategy.log == ["start", "stop"]


class HoldsScopes(Feed):
    """An async feed that keeps a cancel scope (and a task group, as anyio-based clients do)
    open across its yields."""

    def __init__(self, events: list[MarketTick], *, task_group: bool) -> None:
        self.given = events
        self.task_group = task_group
        self.closed = False

    async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
        try:
            if self.task_group:
                async with anyio.create_task_group() as background:
                    background.start_soon(anyio.sleep_forever)
                    with anyio.move_on_after(60):
                        for tick in self.given:
                            await anyio.sleep(0)
                            yield tick
                    background.cancel_scope.cancel()
            else:
                with anyio.move_on_after(60):
                    for tick in self.given:
                        await anyio.sleep(0)
                        yield tick
        finally:
            self.closed = True


@pytest.mark.parametrize("mode", ["backtest", "live"])
@pytest.mark.parametrize(("task_group", "stop_after"), [(True, None), (False, None), (False, 2)])
def test_an_async_feed_holding_its_own_scopes_is_read_in_one_task(
    mode: str, task_group: bool, stop_after: int | None
) -> None:
    # Read and closed by the pump's task, inside its scope: the feed's scopes are left in the
    # task and the order they were entered in. (A task group held across a yield cannot be
    # closed early at all, by anyio's rules: only read to its end.)
    data = ticks("X", ["10", "11", "12", "13"])
    feed = HoldsScopes(data, task_group=task_group)

    class StopsAfter(_StartTime):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            if stop_after is not None and tick.ts == data[stop_after - 1].ts:
                pipeline.stop()

    strategy = StopsAfter()
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode=mode,  # type: ignore[arg-type]
        feed=feed,
        strategies={"s": strategy},
    )
    result = anyio.run(pipeline.run)
    assert result.market_events == (stop_after or 4)
    assert feed.closed  # left by the task that entered its scopes, with no error
    if mode == "backtest":
        assert strategy.started_at == data[0].ts


def test_a_feed_holding_a_task_group_across_a_yield_is_reported_when_stopped_early(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = ticks("X", ["10", "11", "12", "13"])

    class StopsAtTheSecond(Strategy):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            if tick.ts == data[1].ts:
                pipeline.stop()

    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode="live",
        feed=HoldsScopes(data, task_group=True),
        strategies={"s": StopsAtTheSecond()},
    )
    result = anyio.run(pipeline.run)
    assert result.market_events == 2
    assert (
        "errors while closing: feed's events: its async generator holds a task group across a "
        "yield, which cannot be closed before it ends; see Writing a feed"
    ) in caplog.messages


class Connection:
    """A class-based async iterator over ``data`` whose cleanup awaits (closing a
    connection), logged in ``log``. With ``then_wait``, it waits for more after the data, as
    a live source does."""

    def __init__(self, data: list[MarketTick], log: list[str], *, then_wait: bool) -> None:
        self.given = iter(data)
        self.log = log
        self.then_wait = then_wait

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> MarketTick:
        tick = next(self.given, None)
        if tick is None and self.then_wait:
            await anyio.sleep_forever()
        await anyio.sleep(0)
        if tick is None:
            raise StopAsyncIteration
        return tick

    async def aclose(self) -> None:
        self.log.append("closing")
        await anyio.sleep(0)  # cancelled if closed in a cancelled scope
        self.log.append("closed")


class OverAConnection(Feed):
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def events(self, ctx: FeedContext) -> Any:
        return self.connection


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_an_async_feed_stopped_early_cleans_up_and_is_closed_once(mode: str) -> None:
    data = ticks("X", ["10", "11", "12", "13"])
    log: list[str] = []

    class StopsAtTheSecond(Strategy):
        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            if tick.ts == data[1].ts:
                pipeline.stop()

    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode=mode,  # type: ignore[arg-type]
        feed=OverAConnection(Connection(data, log, then_wait=False)),
        strategies={"s": StopsAtTheSecond()},
    )
    assert anyio.run(pipeline.run).market_events == 2
    assert log == ["closing", "closed"]


def test_an_async_feed_stopped_while_waiting_cleans_up_and_is_closed_once() -> None:
    # The usual live stop: SIGTERM (here another task) while the pump waits for the feed.
    log: list[str] = []
    data = ticks("X", ["10", "11"])
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode="live",
        feed=OverAConnection(Connection(data, log, then_wait=True)),
        strategies={"s": _StartTime()},
    )

    async def main() -> Any:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            with anyio.fail_after(10):
                while pipeline.status.market_events < 2 or not pipeline._waiting_for_feed:
                    await anyio.sleep(0.01)
            pipeline.stop()

    anyio.run(main)
    assert pipeline.result.market_events == 2
    assert log == ["closing", "closed"]


def test_a_backtest_of_an_async_feed_that_never_awaits_still_pauses() -> None:
    # Its pauses let Ctrl-C, a stop from another task, progress and checkpoints in.
    data = ticks("X", [str(10 + index % 7) for index in range(5000)])

    class NeverAwaits(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
            for tick in data:
                yield tick

    reported: list[int] = []
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode="backtest",
        feed=NeverAwaits(),
        strategies={"s": _StartTime()},
        progress=reported.append,
    )
    result = anyio.run(pipeline.run)
    assert result.market_events == 5000
    assert reported[:4] == [1024] * 4 and sum(reported) == 5000


def test_an_async_feed_stopped_in_on_start_delivers_nothing() -> None:
    class StopsAtOnce(Strategy):
        def on_start(self, ctx: StrategyContext) -> None:
            pipeline.stop()

        def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
            raise AssertionError("no tick after a stop in on_start")

    feed = AsyncEvents(ticks("X", ["10", "11"]))
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        mode="backtest",
        feed=feed,
        strategies={"s": StopsAtOnce()},
    )
    result = anyio.run(pipeline.run)
    assert result.market_events == 0 and feed.closed


def test_an_async_feeds_first_event_is_checked() -> None:
    class Naive(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[Any]:  # type: ignore[override]
            yield "not an event"

    with pytest.raises(FeedError, match="feed Naive must give Bar or MarketTick events, not str"):
        tradeloom.backtest(
            {"persistence": {"name": "memory"}}, strategies={"s": _Lifecycle()}, feed=Naive()
        )


class _ClosesOnStop(Strategy):
    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if ctx.position("X") + ctx.open_quantity("X") == 0 and tick.last_price == Decimal(10):
            ctx.buy("X", 5)

    def on_stop(self, ctx: StrategyContext) -> None:
        ctx.sell("X", ctx.position("X"))


def test_the_equity_curve_ends_at_the_final_equity_after_orders_sent_in_on_stop() -> None:
    data = ticks("X", ["10", "12", "11"])
    result = run_strategy(_ClosesOnStop(), data, fill_at="last", commission_bps=100)
    assert [fill.side for fill in result.fills] == ["buy", "sell"]
    # Closing cost 1% of 5 * 11 after the last tick's point.
    last_ts, last_equity = result.equity_curve.series()[-1]
    assert last_equity == result.final_equity
    assert last_ts == data[-1].ts
    assert result.final_equity == Decimal(100_000) - Decimal("0.5") + 5 - Decimal("0.55")
    assert result.to_json()["equity_curve"][-1][1] == str(result.final_equity)


def test_a_fill_at_the_time_of_its_price_is_in_that_times_equity_point() -> None:
    # fill_at = "last": the buy fills as the strategy sends it, after the portfolio stage
    # took the second bar in. Its commission (10 bps of 10,000) is in the second point, so the
    # drawdown of 10 from 100,000 counts.
    class BuysOnTheSecondBar(Strategy):
        def __init__(self) -> None:
            self.equity_after_fill: list[Decimal] = []

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if bar.ts == data[1].ts:
                ctx.buy("X", 100)

        def on_fill(self, fill: Any, ctx: StrategyContext) -> None:
            self.equity_after_fill.append(ctx.equity)

    data = bars("X", ["100", "100", "110"])
    strategy = BuysOnTheSecondBar()
    result = run_strategy(strategy, data, fill_at="last", commission_bps=10)
    assert [equity for _, equity in result.equity_curve.series()] == [
        Decimal(100_000),
        Decimal(99_990),
        Decimal(100_990),
    ]
    assert strategy.equity_after_fill == [Decimal(99_990)]
    assert result.max_drawdown == Decimal(10) / Decimal(100_000)


def test_a_fill_of_the_next_time_is_not_in_the_point_of_the_time_before() -> None:
    # fill_at = "last": on the first bar a market buy fills at once (in that bar's point) and a
    # limit buy rests; the second bar fills it at its open, 95, before the portfolio stage
    # takes that bar in. The first point stays 100,000; the second holds both fills at 80.
    class BuysTwice(Strategy):
        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if bar.ts == data[0].ts:
                ctx.buy("X", 1)
                ctx.buy("X", 10, limit_price="95")

    data = bars("X", ["100", "80", "80"], opens=["100", "95", "80"])
    result = run_strategy(BuysTwice(), data, fill_at="last")
    assert [fill.price for fill in result.fills] == [Decimal(100), Decimal(95)]
    equity = Decimal(100_000) + 1 * (80 - 100) + 10 * (80 - 95)
    assert [value for _, value in result.equity_curve.series()] == [
        Decimal(100_000),
        equity,
        equity,
    ]
    assert result.max_drawdown == (Decimal(100_000) - equity) / Decimal(100_000)


def test_the_drawdown_counts_from_the_starting_equity() -> None:
    # Slippage costs 1% on the first fill, before any point: the curve never falls after it,
    # but the run lost 1% from where it started.
    class BuysAtOnce(Strategy):
        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if ctx.position("X") == 0:
                ctx.buy("X", 1000)

    result = run_strategy(BuysAtOnce(), bars("X", ["100"] * 3), fill_at="last", slippage_bps=100)
    assert result.equity_curve.series()[0][1] == Decimal(99_000)
    assert result.max_drawdown == Decimal("0.01")
    assert result.summary()["max_drawdown"] == "0.010000"


class _BuysTheOtherOnAFill(Strategy):
    """Rests a limit buy of X at 95; when it fills, buys ``then`` at market from on_fill."""

    def __init__(self, then: str) -> None:
        self.then = then
        self.sent = False

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not self.sent:
            self.sent = True
            ctx.buy("X", 1, limit_price="95")

    def on_fill(self, fill: Any, ctx: StrategyContext) -> None:
        if fill.instrument == "X" and fill.side == "buy":
            if self.then == "X":
                ctx.sell("X", 1)
            else:
                ctx.buy(self.then, 1)


def _x_dips_to_94_in_its_third_bar() -> list[Bar]:
    x = bars("X", ["100", "100", "98", "97"], opens=["100", "100", "99", "98"])
    x[2] = x[2].model_copy(update={"low": Decimal(94)})
    return x


def test_an_order_sent_when_told_of_a_fill_fills_after_the_event_that_filled_it() -> None:
    # X's third bar fills the limit buy; Y's third bar, of the same time, began before that
    # decision (it opens at 50 and ends at 60): the buy of Y fills at Y's next open, 60.
    y = bars("Y", ["50", "50", "60", "61"], opens=["50", "50", "50", "60"])
    result = run_strategy(_BuysTheOtherOnAFill("Y"), merge(_x_dips_to_94_in_its_third_bar(), y))
    assert [(f.instrument, f.price, f.ts) for f in result.fills] == [
        ("X", Decimal(95), y[2].ts),
        ("Y", Decimal(60), y[3].ts),
    ]


def test_with_fill_at_last_an_order_sent_when_told_of_a_fill_takes_that_events_price() -> None:
    # The limit buy fills in the third bar (low 94); the sell sent from on_fill fills at once
    # at that bar's latest price, its close 98, not at the bar before's close, 100.
    x = _x_dips_to_94_in_its_third_bar()
    result = run_strategy(_BuysTheOtherOnAFill("X"), x, fill_at="last")
    assert [(f.side, f.price, f.ts) for f in result.fills] == [
        ("buy", Decimal(95), x[2].ts),
        ("sell", Decimal(98), x[2].ts),
    ]


@pytest.mark.parametrize("fill_at", ["next", "last"])
def test_a_signal_sent_when_told_that_input_ended_is_answered_too(fill_at: str) -> None:
    # The limit buy never fills; told so at the end, the strategy buys at market instead.
    # That order cannot fill any more with "next" (no price comes): it is rejected too.
    class Retries(Strategy):
        def __init__(self) -> None:
            self.sent: list[Any] = []
            self.outcomes: dict[Any, str] = {}

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if not self.sent:
                self.sent.append(ctx.buy("X", 1, limit_price="50"))

        def on_rejection(self, rejection: Any, ctx: StrategyContext) -> None:
            self.outcomes[rejection.signal.event_id] = rejection.reason
            if len(self.sent) == 1:
                self.sent.append(ctx.buy("X", 1))

        def on_fill(self, fill: Any, ctx: StrategyContext) -> None:
            self.outcomes[fill.signal_id] = f"filled at {fill.price}"

    strategy = Retries()
    run_strategy(strategy, bars("X", ["100"] * 3), fill_at=fill_at)
    assert [strategy.outcomes.get(signal.event_id) for signal in strategy.sent] == [
        "limit order not filled: input ended before the order could fill",
        "input ended before the order could fill" if fill_at == "next" else "filled at 100",
    ]


class _Lifecycle(Strategy):
    def __init__(self) -> None:
        self.log: list[str] = []

    def on_start(self, ctx: StrategyContext) -> None:
        self.log.append("start")

    def on_stop(self, ctx: StrategyContext) -> None:
        self.log.append("stop")


def test_a_strategy_resending_every_refused_signal_stops_the_run_instead_of_looping() -> None:
    class Insists(Strategy):
        def on_bar(self, bar: Any, ctx: StrategyContext) -> None:
            ctx.sell("X", 1)  # refused at once by no_short

        def on_rejection(self, rejection: Any, ctx: StrategyContext) -> None:
            ctx.sell("X", 1)

    with pytest.raises(StrategyError, match="does its on_rejection or on_fill send the same"):
        run_strategy(Insists(), bars("X", ["10", "11"]), validators=[{"name": "no_short"}])


def test_a_feed_given_up_on_at_its_first_read_still_drains_and_stops() -> None:
    from tradeloom.backoff import ReconnectExhausted

    class GivesUp(Feed):
        def events(self, ctx: FeedContext) -> Any:
            raise ReconnectExhausted("feed", 5, OSError("broker gone"))
            yield  # a generator

    strategy = _Lifecycle()
    with pytest.raises(ReconnectExhausted):
        tradeloom.backtest(
            {"persistence": {"name": "memory"}}, strategies={"s": strategy}, feed=GivesUp()
        )
    assert strategy.log == ["start", "stop"]


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_a_feed_given_up_on_after_some_events_counts_them_in_the_result(mode: str) -> None:
    from tradeloom.backoff import ReconnectExhausted

    class GivesUpLater(Feed):
        async def events(self, ctx: FeedContext) -> Any:
            for event in ticks("X", ["10", "11", "12"]):
                yield event
            raise ReconnectExhausted("feed", 3, OSError("broker gone"))

    pipeline = tradeloom.Pipeline(
        tradeloom.make_settings({"persistence": {"name": "memory"}}),
        mode=mode,
        feed=GivesUpLater(),
        strategies={"s": _Lifecycle()},
    )
    with pytest.raises(ReconnectExhausted):
        anyio.run(pipeline.run)
    result = pipeline.result
    assert result.failed is not None and "gave up after 3" in result.failed
    assert result.market_events == 3
    assert result.last_event_time == ticks("X", ["10", "11", "12"])[-1].ts
    assert "market events   3" in result.format_summary()


def test_an_async_feed_opened_before_on_start_raises_is_closed() -> None:
    class FailsToStart(Strategy):
        def on_start(self, ctx: StrategyContext) -> None:
            raise RuntimeError("no config")

    feed = AsyncEvents(ticks("X", ["10", "11", "12"]))
    with pytest.raises(StrategyError, match="no config"):
        tradeloom.backtest(
            {"persistence": {"name": "memory"}}, strategies={"s": FailsToStart()}, feed=feed
        )
    assert feed.closed


def test_a_feed_opened_before_on_start_raises_is_closed() -> None:
    closed: list[bool] = []

    class Tracked(Feed):
        def events(self, ctx: FeedContext) -> Any:
            try:
                yield from bars("X", ["10", "11", "12"])
            finally:
                closed.append(True)

    class FailsToStart(Strategy):
        def on_start(self, ctx: StrategyContext) -> None:
            raise RuntimeError("no config")

    with pytest.raises(StrategyError) as failure:
        tradeloom.backtest(
            {"persistence": {"name": "memory"}},
            strategies={"s": FailsToStart()},
            feed=Tracked(),
        )
    assert closed == [True]  # while the error (and its traceback) is still held
    assert "no config" in str(failure.value)


def test_a_live_runs_equity_curve_ends_at_its_last_market_time() -> None:
    class ClosesOnStop(Strategy):
        def on_bar(self, bar: Any, ctx: StrategyContext) -> None:
            if bar.close == 12:
                ctx.buy("X", 5)

        def on_stop(self, ctx: StrategyContext) -> None:
            ctx.sell("X", ctx.position("X"))

    data = bars("X", ["10", "11", "12", "20"])
    config = {
        "executor": {"name": "paper", "params": {"fill_at": "last", "commission_bps": "50"}},
        "persistence": {"name": "memory"},
    }
    pipeline = Pipeline(
        make_settings(config), mode="live", strategies={"a": ClosesOnStop()}, events=data
    )
    result = anyio.run(pipeline.run)
    last_ts, last_equity = result.equity_curve.series()[-1]
    assert (last_ts, last_equity) == (data[-1].ts, result.final_equity)


def test_a_live_runs_last_snapshot_values_its_holdings_at_the_last_prices(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A portfolio is saved when a fill changes it; one that then only holds while the prices
    # move was stored with the equity and prices of its last fill, also at the stop.
    class BuysOnce(Strategy):
        def on_bar(self, bar: Any, ctx: StrategyContext) -> None:
            if bar.close == 10:
                ctx.buy("X", 5)

    class Idle(Strategy):
        pass

    data = bars("X", ["10", "11", "12", "25"])

    class PausesAfterTheFirst(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[Bar]:  # type: ignore[override]
            yield data[0]
            await anyio.sleep(1.0)  # the periodic checkpoint saves "a" with its fill
            for bar in data[1:]:
                yield bar

    db = tmp_path / "state.db"
    config = {
        "executor": {"name": "paper", "params": {"fill_at": "last"}},
        "persistence": {"name": "sqlite", "params": {"path": str(db)}},
        "portfolio": {"snapshot_interval_seconds": 0.1},
    }
    pipeline = Pipeline(
        make_settings(config),
        mode="live",
        strategies={"a": BuysOnce(), "b": Idle()},
        feed=PausesAfterTheFirst(),
    )
    result = anyio.run(pipeline.run)
    store = SqlitePersistence(db)
    store.open()
    try:
        stored = store.load_snapshots()
    finally:
        store.close()
    assert stored["a"].positions["X"].last_price == Decimal(25)
    assert stored["a"].equity == result.snapshots["a"].equity == 100_000 + 5 * (25 - 10)
    assert stored["b"].equity == 100_000


class BuysEachOnce(Strategy):
    """One market buy of each instrument, on its first tick."""

    def __init__(self) -> None:
        self.bought: set[str] = set()

    def on_tick(self, tick: MarketTick, ctx: StrategyContext) -> None:
        if tick.instrument not in self.bought:
            self.bought.add(tick.instrument)
            ctx.buy(tick.instrument, 1)


def _ahead_data() -> tuple[list[MarketTick], MarketTick]:
    now = datetime.now(UTC).replace(microsecond=0)
    x = ticks("X", ["10", "11", "12"], start=now - timedelta(minutes=1))
    junk = ticks("JUNK", ["1"], start=datetime(2099, 1, 1, tzinfo=UTC))[0]
    return [x[0], junk, x[1], x[2]], junk


def _assert_the_junk_was_set_aside(result: Any, junk: MarketTick) -> None:
    # Taken in, the junk tick's time would have held X's order (fill_at = "next": after the
    # latest time seen) until 2099: it is bad input instead, and X fills on its next tick.
    assert [(f.instrument, f.price) for f in result.fills] == [("X", Decimal(11))]
    (letter,) = result.dead_letters
    assert letter.error_type == "time_ahead"
    assert letter.reason.startswith("market_tick for JUNK stamped 2099-01-01T00:00:00+00:00 is ")
    assert letter.reason.endswith(
        "s ahead of the wall clock ([pipeline] max_ahead_seconds = 60): a clock or time zone "
        "off, or a corrupt time"
    )
    assert json.loads(letter.raw)["event_id"] == str(junk.event_id)
    assert result.market_events == 3


def test_a_live_tick_stamped_far_ahead_of_the_wall_clock_is_bad_input() -> None:
    data, junk = _ahead_data()
    config = {"executor": {"name": "paper", "params": {"fill_at": "next"}}}
    pipeline = Pipeline(
        make_settings(config), mode="live", strategies={"s": BuysEachOnce()}, events=data
    )
    _assert_the_junk_was_set_aside(anyio.run(pipeline.run), junk)


def test_an_async_live_feeds_tick_stamped_far_ahead_is_bad_input_too() -> None:
    data, junk = _ahead_data()

    class Async(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[MarketTick]:  # type: ignore[override]
            for tick in data:
                yield tick

    config = {"executor": {"name": "paper", "params": {"fill_at": "next"}}}
    pipeline = Pipeline(
        make_settings(config), mode="live", strategies={"s": BuysEachOnce()}, feed=Async()
    )
    _assert_the_junk_was_set_aside(anyio.run(pipeline.run), junk)


def test_a_backtest_takes_any_time() -> None:
    data = ticks("X", ["10", "11"], start=datetime(2099, 1, 1, tzinfo=UTC))
    result = tradeloom.backtest({}, strategies={"s": BuysEachOnce()}, events=data)
    assert result.dead_letters == [] and result.market_events == 2


class CountsSnapshotSaves(SqlitePersistence):
    saves: list[list[tuple[str, Decimal]]] = []
    failing: set[int] = set()  # the numbers of the saves that fail, from 0

    def save_snapshots(self, snapshots: Any) -> None:
        if len(self.saves) in self.failing:
            self.failing.discard(len(self.saves))
            raise OSError("disk full")
        super().save_snapshots(snapshots)
        self.saves.append([(s.portfolio_id, s.equity) for s in snapshots])


class CountsSnapshotSavesPlugin:
    @tradeloom.hookimpl
    def tradeloom_register_persistence(self) -> dict[str, Any]:
        return {"counts_saves": CountsSnapshotSaves}


@pytest.mark.parametrize("failing", [set(), {1}], ids=["saved", "saved after a failure"])
def test_a_live_runs_checkpoints_save_holdings_whose_prices_moved(tmp_path, failing) -> None:  # type: ignore[no-untyped-def]
    # Stored equity follows the market during a live run, not only at its stop; a holding
    # whose price did not move is not written again.
    class BuysOnce(Strategy):
        def on_bar(self, bar: Any, ctx: StrategyContext) -> None:
            if not ctx.position("X") and not ctx.open_quantity("X"):
                ctx.buy("X", 5)

    class Idle(Strategy):
        pass

    data = bars("X", ["10", "10", "12", "12"])
    db = tmp_path / "state.db"
    stored_during_the_run: list[Decimal] = []

    class Pauses(Feed):
        async def events(self, ctx: FeedContext) -> AsyncIterator[Bar]:  # type: ignore[override]
            for bar in data:
                yield bar
                await anyio.sleep(0.6)  # a checkpoint every 0.1 s
            store = SqlitePersistence(db)
            store.open()
            try:
                stored_during_the_run.append(store.load_snapshots()["a"].equity)
            finally:
                store.close()

    CountsSnapshotSaves.saves = []
    # A failed save of a holding valued anew is tried again though its price moves no more.
    CountsSnapshotSaves.failing = set(failing)
    config = {
        "executor": {"name": "paper", "params": {"fill_at": "last"}},
        "persistence": {"name": "counts_saves", "params": {"path": str(db)}},
        "portfolio": {"snapshot_interval_seconds": 0.1},
    }
    pipeline = Pipeline(
        make_settings(config),
        mode="live",
        strategies={"a": BuysOnce(), "b": Idle()},
        feed=Pauses(),
        plugins=[CountsSnapshotSavesPlugin()],
    )
    result = anyio.run(pipeline.run)
    assert stored_during_the_run == [100_000 + 5 * (12 - 10)]
    # The fill's save (both portfolios are new), then one when X moved to 12; none for the
    # bars at the same prices, nor at the stop.
    assert CountsSnapshotSaves.saves == [
        [("a", Decimal(100_000)), ("b", Decimal(100_000))],
        [("a", Decimal(100_010))],
    ]
    assert result.snapshots["a"].equity == 100_010


def test_a_resume_with_nothing_new_keeps_the_stored_time_for_the_next_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = bars("X", ["10", "11", "12", "13", "14", "15"])
    config = {
        "persistence": {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}},
        "strategies": [{"name": "sma_cross", "params": {"fast": 1, "slow": 2}}],
    }
    tradeloom.backtest(config, events=data[:4])
    for _ in range(2):  # nothing new, twice: the second must not replay what the first skipped
        again = tradeloom.backtest(config, events=data[:4], resume=True)
        assert (again.skipped_events, again.market_events) == (4, 0)
        assert all(s.ts == data[3].ts for s in again.snapshots.values())
    rest = tradeloom.backtest(config, events=data, resume=True)
    assert (rest.skipped_events, rest.market_events) == (4, 2)


def test_a_pipeline_stopped_before_it_runs_delivers_nothing() -> None:
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}),
        strategies={"s": _Lifecycle()},
        events=bars("X", [str(10 + i % 5) for i in range(3000)]),
    )
    pipeline.stop()
    result = anyio.run(pipeline.run)
    assert result.market_events == 0


def test_a_feeds_lag_is_shown_as_consumer_lag_of_the_feed() -> None:
    data = ticks("X", ["10", "11"])
    seen: list[dict[str, int]] = []

    class Lagging(Feed):
        def __init__(self) -> None:
            self.pipeline: Pipeline | None = None

        def events(self, ctx: FeedContext) -> Any:
            assert self.pipeline is not None
            ctx.report_lag({"ticks": 7, "quotes": 1})
            seen.append(dict(self.pipeline.status.consumer_lag))
            yield data[0]
            ctx.report_lag({"ticks": 0})  # no longer reads quotes
            seen.append(dict(self.pipeline.status.consumer_lag))
            yield data[1]

    feed = Lagging()
    pipeline = Pipeline(
        make_settings({"persistence": {"name": "memory"}}), feed=feed, strategies={"s": Strategy()}
    )
    feed.pipeline = pipeline
    pipeline.status.consumer_lag["strategy/market"] = 3  # a transport's, left alone
    anyio.run(pipeline.run)
    assert seen == [
        {"strategy/market": 3, "feed/ticks": 7, "feed/quotes": 1},
        {"strategy/market": 3, "feed/ticks": 0},
    ]


def test_a_rejections_journal_that_cannot_be_read_is_said_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Rejections are no state: a role that may not read their table (granted before the
    # owner made it) starts without them, as before they were journaled, and says so.
    from tradeloom.errors import PersistenceError
    from tradeloom_memory.persistence import MemoryPersistence

    class Unreadable(MemoryPersistence):
        def load_rejections(self, after: int = 0) -> list[Any]:
            raise PersistenceError("loading rejections failed: permission denied for table")

    pipeline = Pipeline(make_settings({}), mode="live", events=[], strategies={"s": BuysEachOnce()})
    pipeline.transport.synchronous = False  # as across processes, where they are read
    store = Unreadable()
    store.open()
    with caplog.at_level(logging.WARNING, logger="tradeloom"):
        assert anyio.run(pipeline._load_rejections, store) == ([], 0)
    assert (
        "loading rejections failed: permission denied for table; the rejections journal is not "
        "read, so a signal or order read again after a crash may be decided again"
    ) in caplog.text


def test_only_the_newest_rejections_the_stages_keep_are_read_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The stages remember the newest 100,000 (10 here): a back end that counts its journal
    # is read from there on, not whole (2.8 s a 100,000 rows in sqlite).
    from tradeloom.testing.persistence import make_rejection
    from tradeloom_memory.persistence import MemoryPersistence

    monkeypatch.setattr("tradeloom.runtime.pipeline.OUTCOMES_REMEMBERED", 10)
    journal = [make_rejection("s") for _ in range(25)]

    class Uncounted(MemoryPersistence):
        count_rejections = None  # type: ignore[assignment]

    class Miscounted(MemoryPersistence):
        def count_rejections(self) -> Any:
            return "25"

    pipeline = Pipeline(make_settings({}), mode="live", events=[], strategies={"s": BuysEachOnce()})
    pipeline.transport.synchronous = False  # as across processes, where they are read
    loaded = {}
    for store in (MemoryPersistence(), Uncounted(), Miscounted()):
        store.open()
        store.record_rejections(journal)
        with caplog.at_level(logging.WARNING, logger="tradeloom"):
            loaded[type(store).__name__] = anyio.run(pipeline._load_rejections, store)
    assert loaded["MemoryPersistence"] == (journal[15:], 25)
    assert loaded["Uncounted"] == (journal, 25)
    assert loaded["Miscounted"] == ([], 0)
    assert "count_rejections() returned '25', not a number of rejections; the rejections " in (
        caplog.text
    )


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_plain_feeds_iterator_is_closed_when_the_run_stops_before_reading_it(
    mode: str,
) -> None:
    closed: list[bool] = []

    class Source:
        def __init__(self) -> None:
            self.events = iter(ticks("X", ["10", "11"], start=datetime.now(UTC)))

        def __iter__(self) -> Source:
            return self

        def __next__(self) -> MarketTick:
            return next(self.events)

        def close(self) -> None:
            closed.append(True)

    class Plain(Feed):
        def events(self, ctx: FeedContext) -> Any:
            return Source()

    pipeline = Pipeline(
        make_settings({}), mode=mode, feed=Plain(), strategies={"s": BuysEachOnce()}
    )
    pipeline.stop()  # before it runs
    anyio.run(pipeline.run)
    assert closed == [True]
