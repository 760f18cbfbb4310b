from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import uuid6
from pydantic import ValidationError

from tradeloom.events import Bar, Fill, MarketTick, OrderType, Side, Signal, any_event_adapter

TS = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)


def tick(**overrides: object) -> MarketTick:
    fields: dict[str, object] = {
        "event_id": uuid6.uuid7(),
        "ts": TS,
        "instrument": "ORCL",
        "last_price": "101.25",
    }
    fields.update(overrides)
    return MarketTick(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("NaN", "finite number"),
        ("-Infinity", "finite number"),
        ("-1", "greater than zero"),
        ("0", "greater than zero"),
        (1.5, "float 1.5 is not accepted"),
        ("abc", "valid decimal"),
    ],
)
def test_bad_prices_are_refused_with_a_clear_message(price: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        tick(last_price=price)
    assert caught.value.errors()[0]["loc"] == ("last_price",)


@pytest.mark.parametrize("instrument", ["ORCL\x00", "OR\nCL", "\tORCL", "ORCL\x7f", "OR\u2028CL"])
def test_an_instrument_with_invisible_characters_is_refused(instrument: str) -> None:
    # A NUL would be refused by PostgreSQL only when the fill is journaled; a line break would
    # split a log line or a CSV row. Every event with an instrument checks it where it is made.
    with pytest.raises(ValidationError, match="must be printable text") as caught:
        tick(instrument=instrument)
    assert caught.value.errors()[0]["loc"] == ("instrument",)
    with pytest.raises(ValidationError, match="must be printable text"):
        Signal(
            event_id=uuid6.uuid7(),
            ts=TS,
            strategy_id="s",
            instrument=instrument,
            side=Side.BUY,
            quantity=Decimal(1),
        )


@pytest.mark.parametrize("instrument", ["BRK B", "ÄÖÜ", "日経225", "E-mini S&P/500"])
def test_an_instrument_in_any_script_with_spaces_and_punctuation_is_accepted(
    instrument: str,
) -> None:
    assert tick(instrument=instrument).instrument == instrument


def test_decimal_keeps_its_exponent_and_events_are_frozen() -> None:
    event = tick(last_price="101.250")
    assert str(event.last_price) == "101.250"
    with pytest.raises(ValidationError, match="frozen"):
        event.last_price = Decimal(1)  # type: ignore[misc]


def test_timestamps_must_be_aware_and_become_utc() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        tick(ts=datetime(2024, 1, 2, 15, 30))
    local = datetime(2024, 1, 2, 10, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert tick(ts=local).ts == TS and tick(ts=local).ts.tzinfo is UTC


def test_bar_shape_is_checked() -> None:
    fields = dict(
        event_id=uuid6.uuid7(),
        ts=TS,
        instrument="X",
        open="10",
        high="9",
        low="8",
        close="8.5",
        volume="0",
        start=TS - timedelta(days=1),
        end=TS,
    )
    with pytest.raises(ValidationError, match=r"outside low\.\.high"):
        Bar(**fields)  # type: ignore[arg-type]
    fields["high"] = "7"
    with pytest.raises(ValidationError, match="high 7 is below low 8"):
        Bar(**fields)  # type: ignore[arg-type]


def test_limit_signals_need_a_limit_price_and_market_ones_refuse_it() -> None:
    base = dict(
        event_id=uuid6.uuid7(), ts=TS, strategy_id="s", instrument="X", side="buy", quantity="1"
    )
    with pytest.raises(ValidationError, match="needs a limit_price"):
        Signal(**base, order_type="limit")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must not carry"):
        Signal(**base, limit_price="5")  # type: ignore[arg-type]
    signal = Signal(**base, order_type="limit", limit_price="5")  # type: ignore[arg-type]
    assert signal.order_type is OrderType.LIMIT and signal.side is Side.BUY


def test_unknown_fields_are_refused_and_the_discriminator_picks_the_class() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        tick(colour="red")
    fill = Fill(
        event_id=uuid6.uuid7(),
        ts=TS,
        order_id=uuid6.uuid7(),
        signal_id=uuid6.uuid7(),
        strategy_id="s",
        instrument="X",
        side=Side.SELL,
        quantity=Decimal(3),
        price=Decimal("2.5"),
        commission=Decimal("0.01"),
    )
    again = any_event_adapter.validate_python(fill.model_dump())
    assert type(again) is Fill and again == fill


def test_orders_check_limit_consistency_and_bars_are_stamped_at_their_end() -> None:
    from tradeloom.events import Order

    with pytest.raises(ValidationError, match="a limit order needs a limit_price"):
        Order(
            event_id=uuid6.uuid7(),
            ts=TS,
            signal_id=uuid6.uuid7(),
            strategy_id="s",
            instrument="X",
            side="buy",
            quantity="1",
            order_type="limit",  # type: ignore[arg-type]
        )
    with pytest.raises(ValidationError, match="known only once it has ended"):
        Bar(
            event_id=uuid6.uuid7(),
            ts=TS - timedelta(hours=1),
            instrument="X",
            open="1",  # type: ignore[arg-type]
            high="1",
            low="1",
            close="1",
            volume="0",
            start=TS - timedelta(days=1),
            end=TS,
        )


def test_an_order_gives_back_the_signal_it_was_made_from() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal
    from uuid import uuid4

    from tradeloom.events import Order, OrderType, Side, Signal

    ts = datetime(2024, 1, 2, tzinfo=UTC)
    signal = Signal(
        event_id=uuid4(),
        ts=ts,
        strategy_id="s",
        instrument="X",
        side=Side.SELL,
        quantity=Decimal("2.5"),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("10.25"),
        market_ts=ts,
    )
    order = Order(
        **signal.model_dump(exclude={"type", "event_id"}),
        event_id=uuid4(),
        signal_id=signal.event_id,
    )
    assert order.to_signal() == signal
