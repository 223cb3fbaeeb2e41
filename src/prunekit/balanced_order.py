"""The order in which alternatives are timed, balanced for what ran just before each.

A timed call is slowed or sped by its predecessor: what the caches still hold, whether the
thread pool went to sleep during a single-threaded call, the clock the core settled at. Rotating
a fixed order (A B C, B C A, C A B) moves each alternative through every position but keeps
the cycle, so A always follows C: measured here, a dense layer kept as it was, timed right after
torch's CSR matmul, came out 0.82x of the very same layer timed after its twin. A Williams
design (a Latin square balanced for first-order carry-over) puts every alternative after every
other equally often, and in every position equally often, in ``n`` orders for an even ``n`` and
``2n`` for an odd one.
"""

from __future__ import annotations


def carryover_balanced_orders(count: int) -> list[list[int]]:
    """Orders of ``range(count)`` in which each index follows each other one equally often.

    >>> carryover_balanced_orders(4)
    [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    >>> len(carryover_balanced_orders(3)), carryover_balanced_orders(1)
    (6, [[0]])
    """
    if count < 1:
        raise ValueError(f"need at least one alternative to order, got {count}")
    first, low, high = [0], 1, count - 1
    while len(first) < count:
        first.append(low)
        low += 1
        if len(first) < count:
            first.append(high)
            high -= 1
    orders = [[(index + shift) % count for index in first] for shift in range(count)]
    if count % 2 and count > 1:
        orders += [list(reversed(order)) for order in orders]
    return orders
