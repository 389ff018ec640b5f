"""An order service as it exists before anyone thought of tracing: a service
class and the function that handles one order, run for each order by a worker
thread (the orders and the worker's queue are in `_shop.py`). Standard library
only; it imports nothing of otel_runnables or OpenTelemetry.

    .venv/bin/python examples/service_plain.py

`service_decorated.py` is this file with one decorator per unit of work;
`service_nocode.py` traces this very file without changing a line of it.
"""

from __future__ import annotations

import functools

from _shop import ORDERS, PRICES, Order, run_worker


class OrderService:
    credit_limit = 100

    def __init__(self) -> None:
        self.shipped: list[int] = []

    def quote(self, order: Order) -> int:
        return PRICES[order.sku] * order.quantity

    def charge(self, order: Order, amount: int) -> str:
        if amount > self.credit_limit:
            raise ValueError(f"{amount} is over the credit limit")
        return f"receipt-{order.id}"

    def ship(self, order: Order) -> str:
        self.shipped.append(order.id)
        return f"parcel-{order.id}"


def process_order(service: OrderService, order: Order) -> str:
    amount = service.quote(order)
    receipt = service.charge(order, amount)
    return f"{receipt} {service.ship(order)}"


def run_service(orders: list[Order]) -> list[str]:
    """Every order processed by one worker thread; its results, in order."""
    return run_worker(functools.partial(process_order, OrderService()), orders)


def main() -> None:
    for line in run_service(ORDERS):
        print(line)


if __name__ == "__main__":
    main()
