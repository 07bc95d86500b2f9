"""The two flows the demo routes events into (see scripts/demo.sh and examples/demo.yaml)."""

from prefect import flow


@flow(name="greet", log_prints=True)
def greet(name: str, count: int = 1) -> str:
    for i in range(count):
        print(f"hello {name} ({i + 1}/{count})")
    return f"greeted {name}"


@flow(name="process-order", log_prints=True)
def process_order(order_id: int, amount: float, customer: str = "unknown", note: str = "") -> dict:
    print(f"processing order {order_id} for {customer}: {amount:.2f}" + (f" ({note})" if note else ""))
    return {"order_id": order_id, "charged": round(amount, 2)}
