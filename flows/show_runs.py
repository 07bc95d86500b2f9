"""Prints the demo's flow runs and waits until they are all final: python show_runs.py API_URL N TIMEOUT"""

import json
import sys
import time
import urllib.request

api, expected, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def runs():
    body = json.dumps({"flow_runs": {"tags": {"all_": ["switchyard"]}}, "sort": "NAME_ASC"}).encode()
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


deadline = time.monotonic() + timeout
last = None
while True:
    rs = runs()
    states = [(r["name"], r["state_name"]) for r in rs]
    if states != last:
        last = states
        print(f"\n{len(rs)} flow run(s) started by switchyard:")
        for r in rs:
            params = json.dumps(r["parameters"], sort_keys=True)
            print(f"  {r['name']:<16} {r['state_name']:<10} {params}")
    done = len(rs) >= expected and all(r["state_type"] in FINAL for r in rs)
    if done or time.monotonic() > deadline:
        break
    time.sleep(1)
ok = len(rs) >= expected and all(r["state_type"] == "COMPLETED" for r in rs)
print("\nall runs completed" if ok else "\nnot every run completed in time")
sys.exit(0 if ok else 1)
