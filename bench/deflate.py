#!/usr/bin/env python3
"""permessage-deflate costs in the agent: RSS per idle connection and CPU per message.

    python3 bench/deflate.py [--wsfleet target/release/wsfleet]

Starts `wsfleet testserver` on 127.0.0.1 and runs `wsfleet run` (one agent process, one worker):
- idle: 200 and 2,000 connections each send one 1 KiB compressible message, read its echo and stay
  open; the agent process's RSS is read while all are held (the test server's /stats says when),
  for plain connections, `lean` deflate (no context takeover either way: pooled state) and
  `browser` deflate (context kept both ways, 15-bit client window, server's default). The
  marginal bytes per connection is the RSS slope between the two counts.
- cpu: 50 connections exchange 40,000 echoes of the same 1 KiB message, plain and with each
  deflate setting; CPU seconds of `wsfleet run` and its agent (user + system) per message, and
  the difference to plain: the agent's cost of compressing one message and inflating one.
Prints a JSON object.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

MESSAGE = ('{"symbol":"WSF","bid":101.25,"ask":101.27,"venue":"XNAS","seq":12345},' * 15)[:1024]

SETTINGS = {
    "plain": "off",
    "lean": "{ client_no_context_takeover: true, server_no_context_takeover: true }",
    "browser": "browser",
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return json.loads(response.read())


def scenario(directory, name, text):
    path = Path(directory) / f"{name}.yaml"
    path.write_text(text)
    return path


def idle(wsfleet, port, directory, setting, count):
    hold = 10 + count // 500
    path = scenario(
        directory,
        f"idle_{setting}_{count}",
        f"load: {{ vus: {count}, iterations: 1 }}\nsteps:\n"
        f"  - connect: {{ url: 'ws://127.0.0.1:{port}/echo', timeout: 30s, compression: {SETTINGS[setting]} }}\n"
        f"  - send: {{ text: '{MESSAGE}' }}\n  - receive: {{ timeout: 30s }}\n  - think: {hold}s\n  - close: {{ code: 1000 }}\n",
    )
    run = subprocess.Popen(
        [wsfleet, "run", str(path), "--agents", "1", "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    before = stats(port)["messages_sent"]
    deadline = time.monotonic() + hold + 60
    held = None
    while time.monotonic() < deadline:
        current = stats(port)
        if current["open_connections"] >= count and current["messages_sent"] - before >= count:
            time.sleep(1.0)
            agents = children_of(run.pid)
            held = rss_bytes(agents[0] if agents else run.pid)
            break
        time.sleep(0.1)
    run.wait(hold + 120)
    return held


def cpu(wsfleet, port, directory, setting):
    connections, rounds = 50, 800
    path = scenario(
        directory,
        f"cpu_{setting}",
        f"load: {{ vus: {connections}, iterations: 1 }}\nsteps:\n"
        f"  - connect: {{ url: 'ws://127.0.0.1:{port}/echo', timeout: 30s, compression: {SETTINGS[setting]} }}\n"
        f"  - repeat:\n      count: {rounds}\n      steps:\n"
        f"        - send: {{ text: '{MESSAGE}' }}\n        - receive: {{ timeout: 30s }}\n  - close: {{ code: 1000 }}\n",
    )
    out = Path(directory) / f"cpu_{setting}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [wsfleet, "run", str(path), "--agents", "1", "--workers", "1", "--quiet", "--out", f"json={out}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(out.read_text())
    counters = summary["totals"]["counters"]
    messages = counters["messages_sent"]
    assert messages == connections * rounds and counters["messages_received"] == messages, counters
    return {
        "messages": messages,
        "cpu_seconds": round(seconds, 3),
        "cpu_us_per_message": round(seconds / messages * 1e6, 2),
        "compression_ratio_sent": summary["totals"].get("compression_ratio_sent"),
        "compression_ratio_received": summary["totals"].get("compression_ratio_received"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wsfleet", default="target/release/wsfleet")
    arguments = parser.parse_args()
    wsfleet = os.path.abspath(arguments.wsfleet)
    port = free_port()
    server = subprocess.Popen([wsfleet, "testserver", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {"idle": {}, "cpu": {}}
    try:
        for _ in range(100):
            try:
                stats(port)
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as directory:
            for setting in SETTINGS:
                low, high = idle(wsfleet, port, directory, setting, 200), idle(wsfleet, port, directory, setting, 2000)
                results["idle"][setting] = {
                    "rss_mb_200": round(low / 1e6, 1),
                    "rss_mb_2000": round(high / 1e6, 1),
                    "marginal_bytes_per_connection": round((high - low) / 1800),
                }
            for setting in SETTINGS:
                results["cpu"][setting] = cpu(wsfleet, port, directory, setting)
            plain = results["cpu"]["plain"]["cpu_us_per_message"]
            for setting in ("lean", "browser"):
                results["cpu"][setting]["extra_us_per_message_over_plain"] = round(
                    results["cpu"][setting]["cpu_us_per_message"] - plain, 2
                )
    finally:
        server.terminate()
        server.wait(10)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
