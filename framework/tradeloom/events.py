"""Event schemas: the messages that flow between pipeline stages.

Every event is an immutable pydantic model with a ``type`` discriminator, a
``schema_version``, an ``event_id`` (a UUIDv7 from the configured id generator) and a
timezone-aware UTC timestamp ``ts``. Money, prices and quantities are :class:`~decimal.Decimal`;
floats are refused so that no value is ever silently rounded on the way in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeAlias
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)
from pydantic.types import AllowInfNan

SCHEMA_VERSION = 1


def _refuse_float(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is Decimal or kind is int:
        return value
    if isinstance(value, float):
        what = f"float {value!r}"
    elif isinstance(value, bool):
        what = f"the boolean {value}"
    elif isinstance(value, Decimal | int | str):
        return value
    else:  # pydantic's own message would list float among what it takes
        what = "None" if value is None else type(value).__name__
    raise ValueError(
        f"{what} is not accepted for money, prices or quantities; "
        "pass a Decimal, an int or a numeric string"
    )


SMALLEST_EXPONENT = -100_000
LARGEST_EXPONENT = 99_999
"""Every price, quantity and volume that comes into a pipeline (market data, a strategy's
signals and the orders made from them) is zero or has a magnitude from ``1E-100000`` up to
(not including) ``1E+100000``: its :meth:`~decimal.Decimal.adjusted` exponent lies between
these. Products and quotients of a few such numbers (cash, fees, equity) stay far inside the
exponent range of Python's default Decimal context (``Emax`` 999,999), so the books' arithmetic
on them cannot raise ``Overflow`` nor round a non-zero amount to zero. What the books compute
(fills' prices and fees, cash, positions, equity) is not held to the range."""


def out_of_range(value: Decimal) -> str | None:
    """Why the finite ``value`` is beyond the range of :data:`LARGEST_EXPONENT`, or ``None``."""
    if value and not SMALLEST_EXPONENT <= value.adjusted() <= LARGEST_EXPONENT:
        return (
            f"{value} is out of range: a number must be below 1E+100000 and, unless zero, "
            "at least 1E-100000 in magnitude"
        )
    return None


def _positive(value: Decimal) -> Decimal:
    # One validator for the checks: pydantic calls each Python validator separately, per field.
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value <= 0:
        raise ValueError(f"must be greater than zero, got {value}")
    return value


def _positive_in_range(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value <= 0:
        raise ValueError(f"must be greater than zero, got {value}")
    if not SMALLEST_EXPONENT <= value.adjusted() <= LARGEST_EXPONENT:
        raise ValueError(out_of_range(value))
    return value


def _non_negative(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _non_negative_in_range(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    if value and not SMALLEST_EXPONENT <= value.adjusted() <= LARGEST_EXPONENT:
        raise ValueError(out_of_range(value))
    return value


def _utc(value: datetime) -> datetime:
    tzinfo = value.tzinfo
    if tzinfo is UTC:
        return value  # what astimezone(UTC) would return
    if tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # pydantic words only ValueErrors: this one would escape decoding
        raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from None


# Decimal types. pydantic refuses NaN and infinities itself ("Input should be a finite number",
# also when spelled as strings) with ``allow_inf_nan=False``, stated here rather than relied on
# as a default; the validators still check finiteness before comparing, as a NaN cannot be
# compared.
Amount = Annotated[Decimal, AllowInfNan(False), BeforeValidator(_refuse_float)]
"""Any finite Decimal (cash, P&L, signed position quantities)."""
Price = Annotated[
    Decimal,
    AllowInfNan(False),
    BeforeValidator(_refuse_float),
    AfterValidator(_positive_in_range),
]
"""A finite, strictly positive Decimal in range (see :data:`LARGEST_EXPONENT`): the prices of
market data, signals and orders."""
Quantity = Price
"""A finite, strictly positive Decimal in range: the quantities of signals and orders."""
NonNegative = Annotated[
    Decimal,
    AllowInfNan(False),
    BeforeValidator(_refuse_float),
    AfterValidator(_non_negative_in_range),
]
"""A finite Decimal in range that is zero or more (market data's volumes)."""
Positive = Annotated[
    Decimal, AllowInfNan(False), BeforeValidator(_refuse_float), AfterValidator(_positive)
]
"""A finite, strictly positive Decimal (a fill's price and quantity)."""
NonNegativeAmount = Annotated[
    Decimal, AllowInfNan(False), BeforeValidator(_refuse_float), AfterValidator(_non_negative)
]
"""A finite Decimal that is zero or more (commissions, average prices)."""
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""A timezone-aware datetime, normalised to UTC."""


def _printable(value: str) -> str:
    # Control characters (a NUL, a line break) are not in any venue's symbols; a database
    # (PostgreSQL's text and jsonb refuse NUL), a log line or a file name would trip on them.
    if not value.isprintable():
        raise ValueError(
            "must be printable text: no control characters, line breaks or other "
            "invisible characters"
        )
    return value


Instrument = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]
"""An instrument's name: 1 to 200 printable characters (``str.isprintable``)."""


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Event(BaseModel):
    """Base of every event. Immutable; unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    schema_version: int = SCHEMA_VERSION
    event_id: UUID
    ts: UtcDatetime


class MarketTick(Event):
    """A trade (or quote) print for one instrument."""

    type: Literal["market_tick"] = "market_tick"
    instrument: Instrument
    last_price: Price
    last_quantity: Quantity | None = None
    bid: Price | None = None
    ask: Price | None = None
    volume: NonNegative | None = None

    @property
    def price(self) -> Decimal:
        """The price a paper trader fills at: the last traded price."""
        return self.last_price


class Bar(Event):
    """An OHLCV bar covering ``[start, end)``; ``ts`` is the bar's end (when it became known)."""

    type: Literal["bar"] = "bar"
    instrument: Instrument
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NonNegative
    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _check_shape(self) -> Bar:
        if self.high < self.low:
            raise ValueError(f"bar high {self.high} is below low {self.low}")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError(
                f"bar open {self.open} / close {self.close} outside "
                f"low..high {self.low}..{self.high}"
            )
        if self.end < self.start:
            raise ValueError("bar end is before its start")
        if self.ts < self.end:
            raise ValueError("bar ts is before its end: a bar is known only once it has ended")
        return self

    @property
    def price(self) -> Decimal:
        """The latest known price of the instrument once this bar is complete."""
        return self.close


MarketEvent: TypeAlias = MarketTick | Bar


class _TradeIntent(Event):
    """What a signal and the order made from it both say: who trades what, how much, how."""

    strategy_id: str
    instrument: Instrument
    side: Side
    quantity: Quantity
    order_type: OrderType = OrderType.MARKET
    limit_price: Price | None = None
    market_ts: UtcDatetime | None = None
    """The time of the latest market event of this instrument the strategy had seen when it
    decided (data time, which in a live run differs from ``ts``): executors fill only at
    prices from then on. An order copies its signal's."""

    @model_validator(mode="after")
    def _check_limit(self) -> Self:
        kind = type(self).__name__.lower()
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError(f"a limit {kind} needs a limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError(f"a market {kind} must not carry a limit_price")
        return self


class Signal(_TradeIntent):
    """A strategy's wish to trade. Becomes an :class:`Order` or a :class:`Rejection`."""

    type: Literal["signal"] = "signal"


class Order(_TradeIntent):
    """A signal that passed every validator. ``event_id`` is the order id."""

    type: Literal["order"] = "order"
    signal_id: UUID

    @property
    def order_id(self) -> UUID:
        return self.event_id

    def to_signal(self) -> Signal:
        """The signal this order was made from (its ``event_id`` is ``signal_id``; ``ts`` the
        order's), as a :class:`Rejection` of the order carries it."""
        return Signal(
            event_id=self.signal_id,
            ts=self.ts,
            strategy_id=self.strategy_id,
            instrument=self.instrument,
            side=self.side,
            quantity=self.quantity,
            order_type=self.order_type,
            limit_price=self.limit_price,
            market_ts=self.market_ts,
        )


class Rejection(Event):
    """A signal (or order) that will not be executed, with who refused it and why."""

    type: Literal["rejection"] = "rejection"
    signal: Signal
    validator: str
    reason: str


CANCELLED = "cancel"
"""The ``validator`` of a :class:`Rejection` that answers a :class:`Cancel`."""


class Cancel(Event):
    """A strategy's request to cancel one of its signals, and the order made from it.

    It travels the way the signal did (the signals, then the orders, keyed by the instrument),
    so it never overtakes it. The answer is a :class:`Rejection` of the signal with
    ``validator`` :data:`CANCELLED` while the order was still open; nothing when it had been
    filled or refused first (that outcome is the answer).
    """

    type: Literal["cancel"] = "cancel"
    signal: Signal

    @property
    def instrument(self) -> str:
        return self.signal.instrument


class Fill(Event):
    """An execution. One fill per order: ``order_id`` is unique across fills."""

    type: Literal["fill"] = "fill"
    order_id: UUID
    signal_id: UUID
    strategy_id: str
    instrument: Instrument
    side: Side
    quantity: Positive
    price: Positive
    commission: NonNegativeAmount = Decimal(0)

    @property
    def fill_id(self) -> UUID:
        return self.event_id


class Position(BaseModel):
    """Holdings of one instrument. ``quantity`` is signed: negative means short."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: Amount
    average_price: NonNegativeAmount
    realized_pnl: Amount = Decimal(0)
    last_price: NonNegativeAmount | None = None


class PortfolioSnapshot(Event):
    """The state of one portfolio after applying fills up to ``last_fill_id``."""

    type: Literal["portfolio_snapshot"] = "portfolio_snapshot"
    portfolio_id: str
    cash: Amount
    positions: dict[str, Position] = Field(default_factory=dict)
    equity: Amount
    commission_paid: NonNegativeAmount = Decimal(0)
    fills_applied: int = Field(default=0, ge=0)
    last_fill_id: UUID | None = None


class HealthReport(Event):
    """What a health check found about one stage."""

    type: Literal["health_report"] = "health_report"
    stage: str
    check: str = ""
    severity: Severity
    message: str
    age_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)


AnyEvent: TypeAlias = Annotated[
    MarketTick
    | Bar
    | Signal
    | Order
    | Cancel
    | Rejection
    | Fill
    | PortfolioSnapshot
    | HealthReport,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    "market_tick": MarketTick,
    "bar": Bar,
    "signal": Signal,
    "order": Order,
    "cancel": Cancel,
    "rejection": Rejection,
    "fill": Fill,
    "portfolio_snapshot": PortfolioSnapshot,
    "health_report": HealthReport,
}

any_event_adapter: TypeAdapter[Any] = TypeAdapter(AnyEvent)
"""Validates a mapping (or JSON) into the right event class by its ``type``."""


def utcnow() -> datetime:
    return datetime.now(UTC)
