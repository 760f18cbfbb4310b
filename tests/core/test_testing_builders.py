"""The event builders of tradeloom.testing say what is wrong with a price in one line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tradeloom.testing import bars, ticks


@pytest.mark.parametrize(
    ("price", "error", "message"),
    [
        ("a", ValueError, "'a' is not a number"),
        ("NaN", ValueError, "'NaN' is not a finite number"),
        ("-1", ValueError, "price '-1' is not positive"),
        (0, ValueError, "price 0 is not positive"),
        (1.5, TypeError, "float 1.5 is not exact: pass a str, int or Decimal"),
        (None, ValueError, "None is not a number"),
    ],
)
@pytest.mark.parametrize("builder", [bars, ticks])
def test_a_bad_price_is_named(builder: Any, price: Any, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        builder("X", ["10", price])
    assert str(caught.value) == message


def test_good_prices_keep_their_digits() -> None:
    assert [bar.close for bar in bars("X", ["10.50", 11, Decimal("12.125")])] == [
        Decimal("10.50"),
        Decimal(11),
        Decimal("12.125"),
    ]
    assert [tick.last_price for tick in ticks("X", ["0.01"])] == [Decimal("0.01")]
    assert bars("X", ["10"], volume=0)[0].volume == 0
