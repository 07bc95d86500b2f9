"""Prints the demo's flow runs and waits until they are all final: python show_runs.py API_URL N TIMEOUT

On a terminal the table is redrawn in place as states change; otherwise (a log file, a pipe)
each change is one plain line, and the final table is printed once at the end."""

import json
import sys
import time
import urllib.request

api, expected, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TTY = sys.stdout.isatty()


def runs():
    body = json.dumps({"flow_runs": {"tags": {"all_": ["switchyard"]}}, "sort": "NAME_ASC"}).encode()
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def table(rs):
    lines = [f"{len(rs)} flow run(s) started by switchyard:", f"  {'run':<24} {'state':<10} parameters"]
    for r in rs:
        params = json.dumps(r["parameters"], sort_keys=True)
        lines.append(f"  {r['name']:<24} {r['state_name']:<10} {params}")
    return lines


deadline = time.monotonic() + timeout
drawn = 0
seen = {}
rs = []
while True:
    rs = runs()
    if TTY:
        lines = table(rs)
        # Move up over the previous table, clear it, draw the new one.
        if drawn:
            sys.stdout.write(f"\x1b[{drawn}F\x1b[J")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        drawn = len(lines)
    else:
        for r in rs:
            if seen.get(r["id"]) != r["state_name"]:
                seen[r["id"]] = r["state_name"]
                print(f"  {time.strftime('%H:%M:%S')} {r['name']:<24} {r['state_name']}", flush=True)
    done = len(rs) >= expected and all(r["state_type"] in FINAL for r in rs)
    if done or time.monotonic() > deadline:
        break
    time.sleep(1)
if not TTY:
    print("\n" + "\n".join(table(rs)))
ok = len(rs) >= expected and all(r["state_type"] == "COMPLETED" for r in rs)
print("\nall runs completed" if ok else "\nnot every run completed in time")
sys.exit(0 if ok else 1)
