#!/usr/bin/env python3
"""CPU time per connection of wsfleet and of the reference client, opening, upgrading and
closing connections 50 at a time against tokio-tungstenite's echo example (bench/run.py's
`connect_rate`), measured so that neither start-up nor the kernel's state of the moment decides it.

For each client, a 1 s and a 4 s run under `perf stat` (task-clock, user and system time of the
whole process tree: for wsfleet `wsfleet run` with its controller and agent), and the difference
divided by the difference in connections: what one more connection costs, start-up cancelled.
Client on core 0, server on core 1 (a fresh server per run, its port out of connection tracking,
each run after the TIME_WAIT sockets of the one before expired; see bench/run.py), the order of
the clients alternating between repetitions.

    python3 bench/connect_cpu.py                 # 2 repetitions, target/release binaries
    python3 bench/connect_cpu.py --repeat 4 --wsfleet PATH --out results.json

Needs `perf` (Debian's linux-perf).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: servers, untracking, TIME_WAIT settling)

EVENTS = "task-clock,user_time,system_time"


UNITS = {"msec": 1e-3, "usec": 1e-6, "ns": 1e-9}


def perf_stat(command):
    """Runs `command` under `perf stat`; returns seconds of task-clock (every task of the tree),
    user and system time (the process and the children it waited for: `wsfleet run` waits for
    its agent)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".csv") as out:
        subprocess.run(["perf", "stat", "-x,", "-e", EVENTS, "-o", out.name, *command],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        values = {}
        for line in out.read().splitlines():
            fields = line.split(",")
            if len(fields) > 3 and fields[0][:1].isdigit():
                # value, unit, event: task-clock in msec, user_time and system_time in ns.
                if fields[1] not in UNITS:
                    raise SystemExit(f"perf stat gave {fields[2]} in `{fields[1]}`, a unit this script does not know")
                values[fields[2].split(":")[0]] = float(fields[0]) * UNITS[fields[1]]
    missing = [event for event in EVENTS.split(",") if event not in values]
    if missing:
        raise SystemExit(f"perf stat did not count {', '.join(missing)} (user_time and system_time need perf 5.13 or later)")
    return {"cpu": values["task-clock"], "user": values["user_time"], "system": values["system_time"]}


def wsfleet_side(binary, seconds):
    server = bench.UpstreamServer()
    try:
        with tempfile.TemporaryDirectory() as directory:
            scenario = Path(directory) / "connect.yaml"
            scenario.write_text(
                f"name: connect-cpu\nload: {{ vus: 50, duration: {seconds}s, graceful_stop: 2s }}\n"
                f"steps:\n  - connect: {{ url: '{server.url}' }}\n  - close: {{ code: 1000 }}\n")
            summary = Path(directory) / "summary.json"
            times = perf_stat(["taskset", "-c", bench.CLIENT_CORE, str(binary), "run", str(scenario), "--agents", "1",
                               "--workers", "1", "--quiet", "--out", f"json={summary}"])
            return json.loads(summary.read_text())["totals"]["counters"]["connections_opened"], times
    finally:
        server.stop()


def reference_side(binary, seconds):
    server = bench.UpstreamServer()
    try:
        with tempfile.NamedTemporaryFile(mode="r", suffix=".json") as out:
            times = perf_stat(["taskset", "-c", bench.CLIENT_CORE, "sh", "-c",
                               f"exec {binary} --url {server.url} connect-rate --concurrency 50 --duration {seconds}s > {out.name}"])
            return json.loads(out.read().strip().splitlines()[-1])["connections"], times
    finally:
        server.stop()


def per_connection(side, binary):
    bench.settle_time_wait()
    short_count, short = side(binary, 1)
    bench.settle_time_wait()
    long_count, long = side(binary, 4)
    added = long_count - short_count
    if added <= 0:
        raise SystemExit(f"the 4 s run opened {long_count} connections, the 1 s run {short_count}: no difference to divide by")
    return {"connections": [short_count, long_count],
            **{f"{key}_us": round(1e6 * (long[key] - short[key]) / added, 2) for key in short}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--wsfleet", type=Path, default=bench.RELEASE / "wsfleet")
    parser.add_argument("--reference", type=Path, default=bench.RELEASE / "wsfleet-reference")
    parser.add_argument("--out", type=Path, help="write the repetitions as JSON here")
    arguments = parser.parse_args()
    bench.terminate_cleanly()
    bench.Untracked.sweep()
    bench.UpstreamServer.binary, upstream = bench.build_upstream_server()
    repetitions = []
    for repetition in range(arguments.repeat):
        sides = [("wsfleet", wsfleet_side, arguments.wsfleet), ("reference", reference_side, arguments.reference)]
        if repetition % 2:
            sides.reverse()
        entry = {name: per_connection(side, binary) for name, side, binary in sides}
        entry["reference_over_wsfleet"] = round(entry["reference"]["cpu_us"] / entry["wsfleet"]["cpu_us"], 3)
        repetitions.append(entry)
        w, r = entry["wsfleet"], entry["reference"]
        print(f"repetition {repetition + 1}: wsfleet {w['cpu_us']} µs a connection (user {w['user_us']}, system "
              f"{w['system_us']}); reference {r['cpu_us']} (user {r['user_us']}, system {r['system_us']}); "
              f"reference / wsfleet {entry['reference_over_wsfleet']}", flush=True)
    if arguments.out:
        arguments.out.write_text(json.dumps({"commit": bench.git_commit(), "upstream": upstream, "repetitions": repetitions}, indent=1) + "\n")


if __name__ == "__main__":
    main()
