"""An order service as it exists before anyone thought of tracing: a queue, a
worker thread and a service class. Standard library only; it imports nothing
of otel_runnables or OpenTelemetry.

    .venv/bin/python examples/service_plain.py

`service_decorated.py` is this file with one decorator per unit of work;
`service_nocode.py` traces this very file without changing a line of it.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

PRICES = {"book": 12, "pen": 2}


@dataclass(frozen=True)
class Order:
    id: int
    sku: str
    quantity: int


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


def worker(service: OrderService, jobs: queue.Queue[Order | None], results: list[str]) -> None:
    while (order := jobs.get()) is not None:
        try:
            results.append(process_order(service, order))
        except ValueError as exc:
            results.append(f"order {order.id} rejected: {exc}")


def run_service(orders: list[Order]) -> list[str]:
    """Feed the orders to one worker thread; its results, in order."""
    jobs: queue.Queue[Order | None] = queue.Queue()
    results: list[str] = []
    thread = threading.Thread(target=worker, args=(OrderService(), jobs, results), name="orders")
    thread.start()
    for order in orders:
        jobs.put(order)
    jobs.put(None)
    thread.join()
    return results


ORDERS = [Order(1, "book", 2), Order(2, "pen", 10), Order(3, "book", 9)]


def main() -> None:
    for line in run_service(ORDERS):
        print(line)


if __name__ == "__main__":
    main()
