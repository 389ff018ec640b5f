"""`service_plain.py` instrumented with the one decorator: the only changes
are the import and the `@traceable` lines. Every order is a trace: the
`process_order` run, with `OrderService.quote`, `.charge` and `.ship` as its
child runs (TOOL spans); a rejected charge marks its span as an error.

    .venv/bin/python examples/service_decorated.py
"""

from __future__ import annotations

import functools

from _print_spans import printing_provider
from _shop import ORDERS, PRICES, Order, run_worker

from otel_runnables import _telemetry as telemetry
from otel_runnables import traceable


@traceable(run_type="tool")  # every public method is a traced run
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


@traceable
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
    # spans printed one line each as they end (children before their parent)
    telemetry.set_tracer_provider(printing_provider())
    main()
