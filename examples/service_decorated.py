"""`service_plain.py` instrumented with the one decorator: the only changes
are the import and the `@traceable` lines. Every order is a trace: the
`process_order` run, with `OrderService.quote`, `.charge` and `.ship` as its
child runs (TOOL spans); a rejected charge marks its span as an error.

    .venv/bin/python examples/service_decorated.py
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from otel_runnables import _telemetry as telemetry
from otel_runnables import traceable

PRICES = {"book": 12, "pen": 2}


@dataclass(frozen=True)
class Order:
    id: int
    sku: str
    quantity: int


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


def one_line(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    status = "ERROR" if not span.status.is_ok else "ok"
    return (
        f"span {span.name:<20} {attributes.get('openinference.span.kind')!s:<6} {status:<5} "
        f"input={attributes.get('input.value')}\n"
    )


if __name__ == "__main__":
    # spans printed one line each as they end (children before their parent)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    telemetry.set_tracer_provider(provider)
    main()
