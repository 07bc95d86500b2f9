"""The flow the outcome tests run with a real process worker: it ends as it is asked to."""

import time

from prefect import flow


@flow(name="outcome")
def outcome(n: int, fail: bool = False, seconds: float = 0.0) -> int:
    if seconds:
        time.sleep(seconds)
    if fail:
        raise ValueError(f"asked to fail (n={n})")
    return n
