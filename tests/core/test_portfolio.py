from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import uuid6

from tradeloom.errors import CorruptStateError
from tradeloom.events import Fill, Side
from tradeloom.portfolio import PortfolioBook
from tradeloom.testing.persistence import make_fill

TS = datetime(2024, 1, 2, tzinfo=UTC)


class Ids:
    def new_id(self):  # type: ignore[no-untyped-def]
        return uuid6.uuid7()


def fill(side: str, quantity: str, price: str, commission: str = "0", pid: str = "p") -> Fill:
    return Fill(
        event_id=uuid6.uuid7(),
        ts=TS,
        order_id=uuid6.uuid7(),
        signal_id=uuid6.uuid7(),
        strategy_id=pid,
        instrument="X",
        side=Side(side),
        quantity=Decimal(quantity),
        price=Decimal(price),
        commission=Decimal(commission),
    )


def test_average_price_realized_pnl_cash_and_flip() -> None:
    book = PortfolioBook(Decimal(1000))
    book.apply_fill(fill("buy", "10", "10", "1"))
    book.apply_fill(fill("buy", "10", "12"))
    portfolio = book.portfolio("p")
    holding = portfolio.holdings["X"]
    assert (holding.quantity, holding.average_price) == (Decimal(20), Decimal(11))
    assert portfolio.cash == Decimal(1000) - 100 - 1 - 120
    book.apply_fill(fill("sell", "5", "15"))
    assert holding.realized_pnl == Decimal(20) and holding.average_price == Decimal(11)
    book.apply_fill(fill("sell", "20", "9"))  # closes 15 at a loss, opens 5 short at 9
    assert holding.quantity == Decimal(-5) and holding.average_price == Decimal(9)
    assert holding.realized_pnl == Decimal(20) + 15 * (Decimal(9) - 11)
    book.mark("X", Decimal(8))
    assert portfolio.equity(book.marks) == portfolio.cash + Decimal(-5) * 8
    assert portfolio.unrealized_pnl(book.marks) == Decimal(5)
    assert portfolio.commission_paid == Decimal(1)


def test_a_fill_is_applied_once_per_order() -> None:
    book = PortfolioBook(Decimal(1000))
    once = fill("buy", "1", "10")
    assert book.apply_fill(once) is True
    assert book.apply_fill(once) is False
    assert book.apply_fill(once.model_copy(update={"event_id": uuid6.uuid7()})) is False
    assert book.portfolio("p").position("X") == 1


def test_only_changed_portfolios_are_dirty_and_a_change_during_a_save_stays_dirty() -> None:
    book = PortfolioBook(Decimal(1000))
    for index in range(1000):
        book.portfolio(f"p{index}")
    book.mark_saved(book.dirty())
    for pid in ("p1", "p500", "p999"):
        book.apply_fill(fill("buy", "1", "10", pid=pid))
    saving = book.dirty()
    assert sorted(saving) == ["p1", "p500", "p999"]
    book.apply_fill(fill("buy", "1", "10", pid="p500"))  # arrives while the save runs
    book.mark_saved(saving)
    assert list(book.dirty()) == ["p500"]


def test_restore_reapplies_journaled_fills_after_the_snapshot() -> None:
    live = PortfolioBook(Decimal(1000))
    journal = [fill("buy", "3", "10"), fill("buy", "1", "12")]
    for f in journal:
        live.apply_fill(f)
    snapshot = live.portfolio("p").snapshot(Ids(), TS, live.marks)
    later = [fill("sell", "2", "15", "0.5")]
    for f in later:
        live.apply_fill(f)
    restored = PortfolioBook(Decimal(1000))
    assert restored.restore({"p": snapshot}, journal + later) == 1
    a, b = restored.portfolio("p"), live.portfolio("p")
    assert (a.cash, a.position("X"), a.realized_pnl(), a.fills_applied) == (
        b.cash,
        b.position("X"),
        b.realized_pnl(),
        b.fills_applied,
    )
    assert restored.apply_fill(journal[0]) is False  # journaled fills count as applied


def test_restore_refuses_a_snapshot_whose_last_fill_is_not_journaled() -> None:
    live = PortfolioBook(Decimal(1000))
    live.apply_fill(fill("buy", "1", "10"))
    snapshot = live.portfolio("p").snapshot(Ids(), TS, live.marks)
    with pytest.raises(CorruptStateError, match="not in the fills journal"):
        PortfolioBook(Decimal(1000)).restore({"p": snapshot}, [])


def test_the_rounding_of_a_non_terminating_average_is_as_concepts_md_says() -> None:
    book = PortfolioBook(Decimal(100))
    for side, quantity, price in [("buy", 1, 1), ("buy", 2, 2), ("sell", 3, 3)]:
        book.apply_fill(make_fill("p", side=side, quantity=quantity, price=price, commission=0))
    page = (Path(__file__).parents[2] / "docs" / "concepts.md").read_text()
    portfolio = book.portfolio("p")
    assert f"realizes `{portfolio.realized_pnl()}`" in page
    assert "`1.666666666666666666666666667`" in page
    assert portfolio.cash == Decimal(104)
