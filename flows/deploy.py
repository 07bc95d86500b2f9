"""Deploys the demo flows from this directory to a process work pool: python deploy.py POOL"""

import sys
from pathlib import Path

from demo_flows import greet, process_order

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    pool = sys.argv[1]
    for fn, entrypoint in [(greet, "demo_flows.py:greet"), (process_order, "demo_flows.py:process_order")]:
        fn.from_source(source=str(HERE), entrypoint=entrypoint).deploy(
            name="from-switchyard", work_pool_name=pool, print_next_steps=False
        )
