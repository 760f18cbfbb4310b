"""Portfolio accounting in Decimal: cash, positions, average price, realized and unrealized
P&L, equity. One portfolio per strategy (its id is the strategy id)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from tradeloom.components import IdGenerator
from tradeloom.errors import CorruptStateError
from tradeloom.events import Fill, PortfolioSnapshot, Position, Side

ZERO = Decimal(0)


HeldTerms = list[tuple[str, Decimal, Decimal]]
EquityTerms = list[tuple[Decimal, HeldTerms]]


def holdings_value(cash: Decimal, held: HeldTerms, marks: Mapping[str, Decimal]) -> Decimal:
    """A portfolio's equity: cash plus each holding at its latest price (``marks``), or, without
    one, at its last fill price, or its average price."""
    value = cash
    for instrument, quantity, unmarked in held:
        value += quantity * marks.get(instrument, unmarked)
    return value


def book_value(terms: EquityTerms, marks: Mapping[str, Decimal]) -> Decimal:
    """The equity of every portfolio together (a book's :meth:`PortfolioBook.equity`)."""
    total = ZERO
    for cash, held in terms:
        total += holdings_value(cash, held, marks)
    return total


class Holding:
    """A mutable position. ``quantity`` is signed; ``average_price`` is that of the open part."""

    __slots__ = ("average_price", "last_price", "quantity", "realized_pnl")

    def __init__(
        self,
        quantity: Decimal = ZERO,
        average_price: Decimal = ZERO,
        realized_pnl: Decimal = ZERO,
        last_price: Decimal | None = None,
    ) -> None:
        self.quantity = quantity
        self.average_price = average_price
        self.realized_pnl = realized_pnl
        self.last_price = last_price

    def apply(self, signed_quantity: Decimal, price: Decimal) -> None:
        quantity = self.quantity
        if not quantity:
            # Opening from flat: the average price is the price (what the general formula
            # gives, |q| * price / |q|, exactly and with the price's own exponent).
            self.quantity = signed_quantity
            self.average_price = price
            return
        if (quantity > 0) == (signed_quantity > 0):
            total = quantity + signed_quantity
            self.average_price = (
                abs(quantity) * self.average_price + abs(signed_quantity) * price
            ) / abs(total)
            self.quantity = total
            return
        closed = min(abs(quantity), abs(signed_quantity))
        direction = 1 if quantity > 0 else -1
        self.realized_pnl += closed * (price - self.average_price) * direction
        self.quantity = quantity + signed_quantity
        if self.quantity == 0:
            self.average_price = ZERO
        elif (self.quantity > 0) != (quantity > 0):
            self.average_price = price  # flipped: the remainder was opened at this price

    def unrealized_pnl(self, mark: Decimal | None) -> Decimal:
        price = mark if mark is not None else self.last_price
        if price is None or self.quantity == 0:
            return ZERO
        return self.quantity * (price - self.average_price)

    def to_model(self) -> Position:
        return Position(
            quantity=self.quantity,
            average_price=self.average_price,
            realized_pnl=self.realized_pnl,
            last_price=self.last_price,
        )


class Portfolio:
    """Cash and holdings of one portfolio, changed only by fills."""

    def __init__(self, portfolio_id: str, cash: Decimal) -> None:
        self.portfolio_id = portfolio_id
        self.cash = cash
        self.holdings: dict[str, Holding] = {}
        self.commission_paid = ZERO
        self.fills_applied = 0
        self.last_fill_id: UUID | None = None
        self.version = 0  # bumped by every change; used to tell a change during a save

    @classmethod
    def from_snapshot(cls, snapshot: PortfolioSnapshot) -> Portfolio:
        portfolio = cls(snapshot.portfolio_id, snapshot.cash)
        for instrument, position in snapshot.positions.items():
            portfolio.holdings[instrument] = Holding(
                position.quantity,
                position.average_price,
                position.realized_pnl,
                position.last_price,
            )
        portfolio.commission_paid = snapshot.commission_paid
        portfolio.fills_applied = snapshot.fills_applied
        portfolio.last_fill_id = snapshot.last_fill_id
        return portfolio

    def apply_fill(self, fill: Fill) -> None:
        values = fill.__dict__  # one dict read per field instead of an attribute lookup each
        quantity, price, commission = values["quantity"], values["price"], values["commission"]
        signed = quantity if values["side"] is Side.BUY else -quantity
        instrument = values["instrument"]
        holding = self.holdings.get(instrument)
        if holding is None:
            holding = self.holdings[instrument] = Holding()
        holding.apply(signed, price)
        holding.last_price = price
        self.cash -= signed * price + commission
        self.commission_paid += commission
        self.fills_applied += 1
        self.last_fill_id = values["event_id"]
        self.version += 1

    def position(self, instrument: str) -> Decimal:
        holding = self.holdings.get(instrument)
        return holding.quantity if holding is not None else ZERO

    def held_terms(self) -> HeldTerms:
        """``(instrument, quantity, price without a mark)`` of each non-zero holding, in order:
        all :func:`holdings_value` needs besides cash and the latest prices."""
        return [
            (
                instrument,
                holding.quantity,
                holding.last_price if holding.last_price is not None else holding.average_price,
            )
            for instrument, holding in self.holdings.items()
            if holding.quantity
        ]

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        return holdings_value(self.cash, self.held_terms(), marks)

    def realized_pnl(self) -> Decimal:
        return sum((h.realized_pnl for h in self.holdings.values()), ZERO)

    def unrealized_pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum((h.unrealized_pnl(marks.get(i)) for i, h in self.holdings.items()), ZERO)

    def snapshot(
        self, ids: IdGenerator, ts: datetime, marks: Mapping[str, Decimal]
    ) -> PortfolioSnapshot:
        positions = {}
        for instrument, holding in self.holdings.items():
            mark = marks.get(instrument)
            if mark is not None:
                holding.last_price = mark
            positions[instrument] = holding.to_model()
        return PortfolioSnapshot(
            event_id=ids.new_id(),
            ts=ts,
            portfolio_id=self.portfolio_id,
            cash=self.cash,
            positions=positions,
            equity=self.equity(marks),
            commission_paid=self.commission_paid,
            fills_applied=self.fills_applied,
            last_fill_id=self.last_fill_id,
        )


class PortfolioBook:
    """Every portfolio of a pipeline, the latest prices, and which portfolios changed since
    they were last saved.

    A fill is applied at most once (by ``order_id``: there is one fill per order), so a
    redelivered fill changes nothing.
    """

    def __init__(self, starting_cash: Mapping[str, Decimal] | Decimal) -> None:
        self._starting_cash = starting_cash
        self.portfolios: dict[str, Portfolio] = {}
        self.marks: dict[str, Decimal] = {}
        # Order ids as their 128-bit ints: hashing a UUID runs Python code, an int's does not.
        self.applied_orders: set[int] = set()
        self._saved_versions: dict[str, int] = {}

    def starting_cash(self, portfolio_id: str) -> Decimal:
        if isinstance(self._starting_cash, Decimal):
            return self._starting_cash
        return self._starting_cash.get(portfolio_id, self._starting_cash.get("*", ZERO))

    def portfolio(self, portfolio_id: str) -> Portfolio:
        portfolio = self.portfolios.get(portfolio_id)
        if portfolio is None:
            portfolio = Portfolio(portfolio_id, self.starting_cash(portfolio_id))
            self.portfolios[portfolio_id] = portfolio
        return portfolio

    def apply_fill(self, fill: Fill) -> bool:
        """Apply a fill; False (and no change) when its order was filled before."""
        order = fill.order_id.int
        applied = self.applied_orders
        if order in applied:
            return False
        applied.add(order)
        portfolio = self.portfolios.get(fill.strategy_id)
        if portfolio is None:
            portfolio = self.portfolio(fill.strategy_id)
        portfolio.apply_fill(fill)
        return True

    def mark(self, instrument: str, price: Decimal) -> None:
        self.marks[instrument] = price

    def equity_terms(self) -> EquityTerms:
        """Cash and held terms of every portfolio: what :func:`book_value` needs besides the
        latest prices. Valid until the next fill."""
        return [(portfolio.cash, portfolio.held_terms()) for portfolio in self.portfolios.values()]

    def equity(self) -> Decimal:
        return book_value(self.equity_terms(), self.marks)

    # -- recovery and saving --------------------------------------------------------------

    def restore(self, snapshots: Mapping[str, PortfolioSnapshot], fills: Iterable[Fill]) -> int:
        """Load snapshots, then re-apply journaled fills recorded after each snapshot's last
        fill. Returns the number of fills re-applied."""
        for portfolio_id, snapshot in snapshots.items():
            self.portfolios[portfolio_id] = Portfolio.from_snapshot(snapshot)
            self._saved_versions[portfolio_id] = 0
        waiting_for = {pid: s.last_fill_id for pid, s in snapshots.items() if s.last_fill_id}
        reapplied = 0
        for fill in fills:
            portfolio_id = fill.strategy_id
            if portfolio_id in waiting_for:
                if fill.event_id == waiting_for[portfolio_id]:
                    del waiting_for[portfolio_id]
                self.applied_orders.add(fill.order_id.int)
                continue
            if self.apply_fill(fill):
                reapplied += 1
        if waiting_for:
            missing = ", ".join(f"{pid} (fill {fid})" for pid, fid in waiting_for.items())
            raise CorruptStateError(
                f"snapshots refer to fills that are not in the fills journal: {missing}"
            )
        return reapplied

    def dirty(self) -> dict[str, int]:
        """Portfolios changed since their last successful save, with their current version."""
        return {
            pid: p.version
            for pid, p in self.portfolios.items()
            if self._saved_versions.get(pid, -1) != p.version
        }

    def mark_saved(self, versions: Mapping[str, int]) -> None:
        """Record a successful save of these versions. A portfolio changed since stays dirty."""
        self._saved_versions.update(versions)
