#!/usr/bin/env python3
"""The agent's instructions per echoed message, counted by callgrind: repeatable whatever else the
machine does, so a change to the agent's hot path can be compared with the one before it.

Plays echo with one message in flight (100 VUs, each a `repeat` of one send and one receive, a
fixed count) under `valgrind --tool=callgrind --trace-children=yes` with one one-worker agent,
against `wsfleet testserver` running at full speed outside valgrind, and prints the agent's
instructions per echoed message: all of them, and without the read buffer's zero-fill (`memset`,
which moves with buffer sizes, not with the agent's code).

    python3 bench/callgrind.py                      # uses target/release/wsfleet
    python3 bench/callgrind.py --wsfleet PATH       # another build, e.g. the commit before a change
    python3 bench/callgrind.py --script             # with a small script step before each send
    python3 bench/callgrind.py --script-code CODE   # with that script step instead (e.g.
                                                    # 'let tag = agent + "-" + vu;')
    python3 bench/callgrind.py --in-flight 16       # 16 sends, then 16 receives, per round
    python3 bench/callgrind.py --fire               # fire-and-count: sends never wait, a handler
                                                    # counts the echoes (bench/run.py's `fire`)
    python3 bench/callgrind.py --keep DIR           # keep the agent's callgrind output in DIR, for
                                                    # callgrind_annotate

The agent's per-second work (reports, gRPC) is in the totals; with 200,000 messages it is a few
percent of them and the same for two builds of the same scenario.
"""

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def total_and_memset(path):
    """The file's total instructions and those spent in memset (exclusive)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(path)], capture_output=True, text=True, check=True
    ).stdout
    total = None
    memset = 0
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if not match:
            continue
        count = int(match.group(1).replace(",", ""))
        name = match.group(2)
        if "PROGRAM TOTALS" in name:
            total = count
        elif "memset" in name:
            memset += count
    if total is None:
        raise SystemExit(f"no totals in {path}")
    return total, memset


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wsfleet", default=str(ROOT / "target" / "release" / "wsfleet"))
    parser.add_argument("--vus", type=int, default=100)
    parser.add_argument("--count", type=int, default=2000, help="messages per VU")
    parser.add_argument(
        "--script",
        action="store_true",
        help="play a small script per message (a `script` step that sets a value from the round)",
    )
    parser.add_argument(
        "--script-code",
        help="the script step's code (implies --script; default `let seq = iteration + 1;`)",
    )
    parser.add_argument("--in-flight", type=int, default=1, help="sends per round before as many receives")
    parser.add_argument(
        "--fire",
        action="store_true",
        help="fire-and-count: a repeat of one send that never waits, and an on_message rule that takes the echoes",
    )
    parser.add_argument("--keep", help="a folder to copy the agent's callgrind output into")
    arguments = parser.parse_args()
    if arguments.script_code is not None:
        arguments.script = True
    script_code = arguments.script_code or "let seq = iteration + 1;"

    port = free_port()
    server = subprocess.Popen(
        [arguments.wsfleet, "testserver", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the test server did not start")
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as directory:
            scenario = Path(directory) / "echo.yaml"
            message = "x" * 64
            if arguments.fire:
                # The echoes still on their way when the sends end are read by the close, whose
                # handshake waits for them (the server echoes in order, then closes).
                body = f"        - send: {{ text: '{message}' }}\n"
                handlers = "on_message:\n  - name: echoes\n"
                close = "  - close: { code: 1000, timeout: 60s }\n"
            else:
                body = (
                    (f"        - script: {json.dumps(script_code)}\n" if arguments.script else "")
                    + f"        - send: {{ text: '{message}' }}\n" * arguments.in_flight
                    + "        - receive: { timeout: 60s }\n" * arguments.in_flight
                )
                handlers = ""
                close = "  - close: { code: 1000 }\n"
            rounds = arguments.count if arguments.fire else arguments.count // arguments.in_flight
            scenario.write_text(
                f"name: echo\nload: {{ vus: {arguments.vus}, iterations: 1 }}\n{handlers}"
                f"steps:\n  - connect: {{ url: 'ws://127.0.0.1:{port}/echo', timeout: 60s }}\n"
                f"  - repeat:\n      count: {rounds}\n      steps:\n{body}{close}"
            )
            summary_path = Path(directory) / "summary.json"
            subprocess.run(
                [
                    "valgrind", "--tool=callgrind", "--trace-children=yes",
                    f"--callgrind-out-file={directory}/callgrind.%p",
                    arguments.wsfleet, "run", str(scenario), "--agents", "1", "--workers", "1",
                    "--quiet", "--out", f"json={summary_path}",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=1800,
            )
            summary = json.loads(summary_path.read_text())
            messages = summary["totals"]["counters"]["messages_received"]
            expected = arguments.vus * rounds * (1 if arguments.fire else arguments.in_flight)
            if messages != expected:
                raise SystemExit(f"{messages} messages echoed, {expected} expected")
            agents = []
            for output in Path(directory).glob("callgrind.*"):
                command = next((line for line in output.read_text(errors="replace").splitlines() if line.startswith("cmd:")), "")
                if " agent " in f"{command} ":
                    agents.append(output)
            if len(agents) != 1:
                raise SystemExit(f"expected one agent's callgrind output, found {len(agents)}")
            total, memset = total_and_memset(agents[0])
            if arguments.keep:
                Path(arguments.keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(agents[0], Path(arguments.keep) / "callgrind.agent")
            print(json.dumps({
                "messages": messages,
                "agent_instructions": total,
                "per_message": round(total / messages),
                "per_message_without_memset": round((total - memset) / messages),
            }))
    finally:
        server.terminate()
        server.wait(5)


if __name__ == "__main__":
    sys.exit(main())
