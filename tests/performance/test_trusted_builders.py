"""Events built without a second validation equal validated ones; anything not plain is
validated as before, with the same errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from tradeloom.events import Fill, Order, OrderType, Side, Signal
from tradeloom.portfolio import Portfolio
from tradeloom.runtime.clock import SimulatedClock
from tradeloom.runtime.trusted import build_fill, build_order, build_signal, trusted_builder
from tradeloom.strategy import StrategyContext
from tradeloom_uuid7.generator import Uuid7Generator

TS = datetime(2024, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
ID = UUID("01900000-0000-7000-8000-0000000000aa")

ORDER_VALUES: dict[str, Any] = {
    "event_id": ID,
    "ts": TS,
    "signal_id": ID,
    "strategy_id": "s",
    "instrument": "ORCL",
    "side": Side.SELL,
    "quantity": Decimal("2.50"),
    "order_type": OrderType.MARKET,
    "limit_price": None,
    "market_ts": TS,
}
FILL_VALUES: dict[str, Any] = {
    "event_id": ID,
    "ts": TS,
    "order_id": ID,
    "signal_id": ID,
    "strategy_id": "s",
    "instrument": "ORCL",
    "side": Side.BUY,
    "quantity": Decimal(3),
    "price": Decimal("101.25"),
    "commission": Decimal("0.0300"),
}


def _same(built: Any, checked: Any) -> None:
    assert type(built) is type(checked)
    assert built == checked
    assert built.model_dump_json() == checked.model_dump_json()
    assert built.model_fields_set == checked.model_fields_set
    assert hash(built) == hash(checked)


@pytest.mark.parametrize(
    ("build", "cls", "values"),
    [
        (build_order, Order, ORDER_VALUES),
        (build_fill, Fill, FILL_VALUES),
        (build_signal, Signal, {k: v for k, v in ORDER_VALUES.items() if k != "signal_id"}),
    ],
)
def test_built_events_equal_validated_ones(build: Any, cls: Any, values: dict[str, Any]) -> None:
    assert build is not cls  # the fast path is in use with this pydantic
    _same(build(**values), cls(**values))
    with pytest.raises(ValidationError, match="frozen"):  # immutable like any event
        build(**values).quantity = Decimal(1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", str(ID)),
        ("ts", TS.astimezone(timezone(timedelta(hours=2)))),
        ("ts", TS.isoformat()),
    ],
)
def test_ids_and_times_that_are_not_plain_are_validated(field: str, value: Any) -> None:
    built = build_order(**{**ORDER_VALUES, field: value})
    _same(built, Order(**{**ORDER_VALUES, field: value}))
    assert built.ts.tzinfo is UTC and isinstance(built.event_id, UUID)


def test_a_naive_time_from_a_clock_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        build_fill(**{**FILL_VALUES, "ts": TS.replace(tzinfo=None)})


def test_a_builder_that_disagrees_with_validation_validates_always() -> None:
    # A sample that validation changes (a naive time made UTC, a str id made a UUID) cannot
    # prove the fast path, so the builder is the model itself.
    assert trusted_builder(Order, {**ORDER_VALUES, "event_id": str(ID)}) is Order


def _context(ids: Any = None, clock: Any = None) -> tuple[StrategyContext, list[Signal]]:
    sent: list[Signal] = []
    clock = clock or SimulatedClock(TS)
    ctx = StrategyContext(
        "s", Portfolio("s", Decimal(1000)), {}, ids or Uuid7Generator(), clock, sent.append
    )
    return ctx, sent


def _as_validated(signal: Signal) -> Signal:
    """The same signal through validation, given the fields StrategyContext gives."""
    given = set(Signal.model_fields) - {"schema_version", "type"}
    return Signal(**{name: getattr(signal, name) for name in given})


@pytest.mark.parametrize(
    ("quantity", "limit_price", "expected_quantity"),
    [
        (Decimal("1.50"), None, Decimal("1.50")),
        (3, None, Decimal(3)),
        ("2.5", None, Decimal("2.5")),
        (Decimal(1), Decimal("99.90"), Decimal(1)),
        (1, 100, Decimal(1)),
        (Decimal("9.9E+99999"), Decimal("1E-100000"), Decimal("9.9E+99999")),
        pytest.param(10**100000 - 1, None, Decimal(10**100000 - 1), id="int-below-1E+100000"),
    ],
)
def test_signals_from_a_strategy_equal_validated_ones(
    quantity: Any, limit_price: Any, expected_quantity: Decimal
) -> None:
    ctx, sent = _context()
    signal = ctx.buy("ORCL", quantity, limit_price)
    assert sent == [signal]
    assert signal.quantity == expected_quantity
    assert signal.quantity.as_tuple() == expected_quantity.as_tuple()
    assert signal.order_type is (OrderType.MARKET if limit_price is None else OrderType.LIMIT)
    _same(signal, _as_validated(signal))


@pytest.mark.parametrize(
    ("quantity", "limit_price", "instrument", "message"),
    [
        (1.5, None, "ORCL", "float"),
        (Decimal("NaN"), None, "ORCL", "finite"),
        (Decimal("-1"), None, "ORCL", "greater than zero"),
        (0, None, "ORCL", "greater than zero"),
        (True, None, "ORCL", "the boolean True is not accepted"),
        (1, Decimal(0), "ORCL", "greater than zero"),
        (1, Decimal("Infinity"), "ORCL", "finite"),
        (Decimal("1E+100000"), None, "ORCL", "out of range"),
        (Decimal("1E-100001"), None, "ORCL", "out of range"),
        pytest.param(10**100000, None, "ORCL", "out of range", id="int-1E+100000"),
        (1, Decimal("1E+999999"), "ORCL", "out of range"),
        (1, None, "", "at least 1 character"),
        (1, None, "X" * 201, "at most 200 characters"),
        (1, None, "ORCL\x00", "must be printable text"),
        (Decimal(1), Decimal(2), "OR\nCL", "must be printable text"),
    ],
)
def test_bad_signals_from_a_strategy_are_refused_as_before(
    quantity: Any, limit_price: Any, instrument: str, message: str
) -> None:
    ctx, sent = _context()
    with pytest.raises(ValueError, match=message) as refused:
        ctx.sell(instrument, quantity, limit_price)
    # One line naming the side, the instrument and the field, not pydantic's dump.
    assert str(refused.value).startswith(f"sell {instrument!r}: ")
    assert "\n" not in str(refused.value)
    assert sent == []


def _trader(**params: Any) -> tuple[Any, list[Any]]:
    import logging

    from tradeloom.components import ExecutionContext
    from tradeloom_paper.trader import PaperTrader

    emitted: list[Any] = []
    trader = PaperTrader(**params)
    trader.bind(
        ExecutionContext(
            ids=Uuid7Generator(),
            clock=SimulatedClock(TS),
            emit=emitted.append,
            logger=logging.getLogger("test"),
        )
    )
    return trader, emitted


def _tick(price: str, ts: datetime) -> Any:
    from tradeloom.events import MarketTick

    return MarketTick(
        event_id=Uuid7Generator().new_id(), ts=ts, instrument="ORCL", last_price=Decimal(price)
    )


def test_paper_fills_equal_validated_ones() -> None:
    trader, emitted = _trader(commission_bps=Decimal("2.5"), slippage_bps=Decimal(3))
    trader.on_order(Order(**ORDER_VALUES))
    trader.on_market(_tick("101.25", TS + timedelta(seconds=1)))
    (fill,) = emitted
    assert fill.price == Decimal("101.25") * (1 - Decimal(3) / 10_000)
    _same(fill, Fill(**{name: getattr(fill, name) for name in FILL_VALUES}))


def test_slippage_that_could_take_a_price_to_zero_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="slippage_bps must be below 10000"):
        _trader(slippage_bps=Decimal(10_000))
