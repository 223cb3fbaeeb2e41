from collections import Counter

import pytest

from prunekit.balanced_order import carryover_balanced_orders


@pytest.mark.parametrize("count", range(1, 10))
def test_orders_are_latin_and_balanced_for_the_predecessor(count: int) -> None:
    orders = carryover_balanced_orders(count)
    assert len(orders) == (2 * count if count % 2 and count > 1 else count)
    assert all(sorted(order) == list(range(count)) for order in orders)
    positions = Counter((order[i], i) for order in orders for i in range(count))
    assert len(positions) == count * count and len(set(positions.values())) == 1
    followers = Counter((order[i], order[i + 1]) for order in orders for i in range(count - 1))
    assert len(followers) == count * (count - 1)
    assert len(set(followers.values())) <= 1


def test_no_alternatives_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        carryover_balanced_orders(0)
