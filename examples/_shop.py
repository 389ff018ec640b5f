"""What the order-service examples share and tracing leaves alone: the price
list, the orders, and the queue one worker thread takes them from. Standard
library only."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

PRICES = {"book": 12, "pen": 2}


@dataclass(frozen=True)
class Order:
    id: int
    sku: str
    quantity: int


ORDERS = [Order(1, "book", 2), Order(2, "pen", 10), Order(3, "book", 9)]


def run_worker(process: Callable[[Order], str], orders: list[Order]) -> list[str]:
    """Feed the orders to one worker thread that calls ``process`` on each; its
    results, in order (a rejected order as a line saying why)."""
    jobs: queue.Queue[Order | None] = queue.Queue()
    results: list[str] = []

    def worker() -> None:
        while (order := jobs.get()) is not None:
            try:
                results.append(process(order))
            except ValueError as exc:
                results.append(f"order {order.id} rejected: {exc}")

    thread = threading.Thread(target=worker, name="orders")
    thread.start()
    for order in orders:
        jobs.put(order)
    jobs.put(None)
    thread.join()
    return results
