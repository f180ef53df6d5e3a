#!/usr/bin/env python3
"""The agent's instructions per echoed message, counted by callgrind: repeatable whatever else the
machine does, so a change to the agent's hot path can be compared with the one before it. The same
counts for the reference client (bench/reference), against the same server, say what wsfleet does
beyond the fastest known client; `--syscalls` counts system calls instead.

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
    python3 bench/callgrind.py --server upstream    # against tokio-tungstenite's echo example (as
                                                    # bench/run.py builds it) instead of the test server
    python3 bench/callgrind.py --client reference   # the reference client, run the same way
    python3 bench/callgrind.py --connect            # per connection: open, handshake, close, 50 at a
                                                    # time (bench/run.py's `connect_rate`)
    python3 bench/callgrind.py --syscalls           # system calls per message (or connection), by
                                                    # name, and those that failed with EAGAIN,
                                                    # recorded by `perf record` of raw_syscalls at full
                                                    # speed (client on core 0, server on core 1)

The agent's per-second work (reports, gRPC) is in the totals; with 200,000 messages it is a few
percent of them and the same for two builds of the same scenario. Under valgrind a run lasts ~50
times longer than at full speed, and that work weighs as much more: `vu_work_per_message` (or
`_per_connection`) leaves out the inclusive cost of the reporter's, the session's and the gRPC
connection's tasks, to compare with the reference, which has none. Only the client is counted: the
server runs outside valgrind and perf, and for wsfleet only the agent process (`wsfleet run`'s
controller is left out). The reference plays a fixed count too (`--rounds`, `--connections`), with
the same per-round work as its timed runs.
"""

import argparse
import json
import os
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


# Where `--syscalls` runs each side at full speed, as bench/run.py does.
CLIENT_CORE = "0"
SERVER_CORE = "1"

# EAGAIN, as raw_syscalls:sys_exit reports it.
EAGAIN = -11


def syscall_names():
    """x86-64 system call numbers to names, from the kernel headers (numbers stay numbers where
    the headers are missing)."""
    names = {}
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if header.exists():
        for line in header.read_text().splitlines():
            match = re.match(r"#define __NR_(\w+) (\d+)", line)
            if match:
                names[int(match.group(2))] = match.group(1)
    return names


def count_syscalls(perf_data, client_pid_of):
    """System calls in a `perf record -e raw_syscalls:sys_enter -e raw_syscalls:sys_exit`
    file, of the process `client_pid_of` picks from the pids recorded: by name, and by name
    those that returned EAGAIN."""
    script = subprocess.run(
        ["perf", "script", "-i", str(perf_data), "-F", "pid,event,trace"],
        capture_output=True, text=True, check=True,
    ).stdout
    events = []
    for line in script.splitlines():
        match = re.match(r"\s*(\d+)\s+raw_syscalls:sys_(enter|exit):\s+NR (-?\d+)(?: \(.*\))?(?:\s*=\s*(-?\d+))?", line)
        if match:
            events.append((int(match.group(1)), match.group(2), int(match.group(3)), match.group(4)))
    if not events:
        raise SystemExit(f"no system calls recorded in {perf_data}")
    client = client_pid_of([pid for pid, *_ in events])
    names = syscall_names()
    calls, eagain = {}, {}
    for pid, kind, number, returned in events:
        if pid != client:
            continue
        name = names.get(number, str(number))
        if kind == "enter":
            calls[name] = calls.get(name, 0) + 1
        elif returned is not None and int(returned) == EAGAIN:
            eagain[name] = eagain.get(name, 0) + 1
    return calls, eagain


def first_pid(pids):
    """The process perf started: the first to make a system call."""
    return pids[0]


def agent_pid(pids):
    """`wsfleet run`'s agent: the one process besides the run itself (the first recorded)."""
    others = sorted(set(pids) - {pids[0]})
    if len(others) != 1:
        raise SystemExit(f"expected one agent process besides `wsfleet run`, found {len(others)}: {others}")
    return others[0]


def start_server(arguments):
    """The echo server, outside valgrind and perf: `wsfleet testserver` or the upstream example.
    Returns the process and the URL to connect to."""
    port = free_port()
    pin = ["taskset", "-c", SERVER_CORE] if arguments.syscalls else []
    if arguments.server == "upstream":
        sys.path.insert(0, str(ROOT / "bench"))
        import run  # bench/run.py: builds the example the way the timed suite does
        binary, _ = run.build_upstream_server()
        process = subprocess.Popen(
            [*pin, str(binary), f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # It panics at each connection's end; no backtrace is captured without RUST_BACKTRACE.
            env={key: value for key, value in os.environ.items() if key not in ("RUST_LOG", "RUST_BACKTRACE")},
        )
        url = f"ws://127.0.0.1:{port}/"

        def ready():
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    else:
        process = subprocess.Popen(
            [*pin, arguments.wsfleet, "testserver", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"ws://127.0.0.1:{port}/echo"

        def ready():
            urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2).read()
    deadline = time.monotonic() + 10
    while True:
        try:
            ready()
            return process, url
        except OSError:
            if time.monotonic() > deadline:
                process.terminate()
                raise SystemExit(f"the {arguments.server} server did not start")
            time.sleep(0.05)


def wsfleet_scenario(arguments, url, rounds):
    """The scenario `wsfleet run` plays: the workload with a fixed count."""
    message = "x" * 64
    if arguments.connect:
        return (
            f"name: connect\nload: {{ vus: {arguments.vus}, iterations: {arguments.count} }}\n"
            f"steps:\n  - connect: {{ url: '{url}', timeout: 60s }}\n  - close: {{ code: 1000 }}\n"
        )
    if arguments.fire:
        # The echoes still on their way when the sends end are read by the close, whose
        # handshake waits for them (the server echoes in order, then closes).
        body = f"        - send: {{ text: '{message}' }}\n"
        handlers = "on_message:\n  - name: echoes\n"
        close = "  - close: { code: 1000, timeout: 60s }\n"
    else:
        # With --script, a script step before each send (as bench/run.py's script_16 plays it).
        script = (
            f"        - script: {json.dumps(arguments.script_code or 'let seq = iteration + 1;')}\n" if arguments.script else ""
        )
        body = (
            f"{script}        - send: {{ text: '{message}' }}\n" * arguments.in_flight
            + "        - receive: { timeout: 60s }\n" * arguments.in_flight
        )
        handlers = ""
        close = "  - close: { code: 1000 }\n"
    return (
        f"name: echo\nload: {{ vus: {arguments.vus}, iterations: 1 }}\n{handlers}"
        f"steps:\n  - connect: {{ url: '{url}', timeout: 60s }}\n"
        f"  - repeat:\n      count: {rounds}\n      steps:\n{body}{close}"
    )


# The agent's work that happens per second of wall time rather than per message: the entry
# points of its reporter's task, its session's task and the gRPC connection's task (each the
# outermost frame of its own task, so their inclusive costs do not overlap).
PER_SECOND_WORK = (
    "wsfleet_agent::reporter::report_intervals::{{closure}}",
    "wsfleet_agent::session::attach_once::{{closure}}",
    "<hyper::proto::h2::client::H2ClientFuture<B,T,E> as core::future::future::Future>::poll",
)


def inclusive_of(path, functions):
    """The inclusive instructions of `functions` in a callgrind output. A function whose code is
    attributed to several source files (its own and those inlined into it, or one file under two
    spellings of its path) is listed once per file, and the outer entry includes the inner ones:
    each function counts as its largest entry."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=100", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    largest = {}
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(?:\S*?:)?(.*?)(?: \[[^\]]*\])?$", line)
        if match and match.group(2) in functions:
            count = int(match.group(1).replace(",", ""))
            largest[match.group(2)] = max(largest.get(match.group(2), 0), count)
    return sum(largest.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wsfleet", default=str(ROOT / "target" / "release" / "wsfleet"))
    parser.add_argument("--reference", default=str(ROOT / "target" / "release" / "wsfleet-reference"),
                        help="the reference client's binary (with --client reference)")
    parser.add_argument("--client", choices=["wsfleet", "reference"], default="wsfleet",
                        help="the client counted: wsfleet's agent (default) or the reference client")
    parser.add_argument("--server", choices=["testserver", "upstream"], default="testserver",
                        help="the echo server: `wsfleet testserver` (default) or tokio-tungstenite's echo example")
    parser.add_argument("--vus", type=int, help="connections at once (default 100; 50 with --connect)")
    parser.add_argument("--count", type=int, help="messages per VU (default 2000), or with --connect connections per VU (default 100)")
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
    parser.add_argument("--connect", action="store_true",
                        help="per connection: each VU opens a connection, completes the handshake and closes it, --count times")
    parser.add_argument("--syscalls", action="store_true",
                        help="count system calls (perf record of raw_syscalls, at full speed) instead of instructions")
    parser.add_argument("--keep", help="a folder to copy the client's callgrind output into")
    arguments = parser.parse_args()
    if arguments.connect and (arguments.fire or arguments.script or arguments.in_flight != 1):
        parser.error("--connect opens and closes connections: it takes no --fire, --script or --in-flight")
    if arguments.fire and (arguments.script or arguments.script_code is not None):
        parser.error("--fire plays sends only: it takes no --script (use --in-flight N for scripts between sends)")
    if arguments.client == "reference" and (arguments.fire or arguments.script):
        parser.error("the reference client plays echo and connect here, not --fire or --script")
    if arguments.syscalls and arguments.keep:
        parser.error("--keep keeps callgrind's output; --syscalls runs perf instead")
    if arguments.script_code is not None:
        arguments.script = True
    arguments.vus = arguments.vus or (50 if arguments.connect else 100)
    arguments.count = arguments.count or (100 if arguments.connect else 2000)
    rounds = arguments.count if arguments.fire or arguments.connect else arguments.count // arguments.in_flight

    server, url = start_server(arguments)
    try:
        with tempfile.TemporaryDirectory() as directory:
            if arguments.client == "wsfleet":
                scenario = Path(directory) / "workload.yaml"
                scenario.write_text(wsfleet_scenario(arguments, url, rounds))
                summary_path = Path(directory) / "summary.json"
                command = [
                    arguments.wsfleet, "run", str(scenario), "--agents", "1", "--workers", "1",
                    "--quiet", "--out", f"json={summary_path}",
                ]
            elif arguments.connect:
                command = [arguments.reference, "--url", url, "connect-rate", "--concurrency", str(arguments.vus),
                           "--connections", str(arguments.vus * arguments.count)]
            else:
                command = [arguments.reference, "--url", url, "echo", "--connections", str(arguments.vus),
                           "--in-flight", str(arguments.in_flight), "--rounds", str(rounds)]
            if arguments.syscalls:
                perf_data = Path(directory) / "perf.data"
                wrapper = ["perf", "record", "-q", "-e", "raw_syscalls:sys_enter", "-e", "raw_syscalls:sys_exit",
                           "-o", str(perf_data), "--", "taskset", "-c", CLIENT_CORE]
            else:
                wrapper = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                           f"--callgrind-out-file={directory}/callgrind.%p"]
            started = time.monotonic()
            finished = subprocess.run(
                [*wrapper, *command],
                check=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                timeout=1800,
            )
            finished_seconds = time.monotonic() - started
            counted = "connections_opened" if arguments.connect else "messages_received"
            if arguments.client == "wsfleet":
                counters = json.loads(summary_path.read_text())["totals"]["counters"]
                done = counters.get(counted, 0)
                failed = counters.get("connections_failed", 0)
            else:
                report = json.loads(finished.stdout.strip().splitlines()[-1])
                done = report["connections" if arguments.connect else "messages"]
                failed = report.get("failed", 0)
            if arguments.connect:
                expected = arguments.vus * arguments.count
            else:
                expected = arguments.vus * rounds * (1 if arguments.fire else arguments.in_flight)
            if done != expected or failed:
                raise SystemExit(f"{done} {counted.split('_')[0]} done and {failed} failed, {expected} expected")
            unit = "connection" if arguments.connect else "message"
            result = {"client": arguments.client, "server": arguments.server, counted.split("_")[0]: done}
            if arguments.syscalls:
                calls, eagain = count_syscalls(perf_data, agent_pid if arguments.client == "wsfleet" else first_pid)
                total = sum(calls.values())
                result.update({
                    "syscalls": total,
                    f"per_{unit}": round(total / done, 3),
                    f"by_name_per_{unit}": {name: round(count / done, 3) for name, count in sorted(calls.items(), key=lambda item: -item[1])},
                    f"eagain_per_{unit}": {name: round(count / done, 3) for name, count in sorted(eagain.items(), key=lambda item: -item[1])},
                })
            else:
                outputs = []
                for output in Path(directory).glob("callgrind.*"):
                    command_line = next((line for line in output.read_text(errors="replace").splitlines() if line.startswith("cmd:")), "")
                    if arguments.client == "reference" or " agent " in f"{command_line} ":
                        outputs.append(output)
                if len(outputs) != 1:
                    raise SystemExit(f"expected one callgrind output of the {arguments.client} client, found {len(outputs)}")
                total, memset = total_and_memset(outputs[0])
                if arguments.keep:
                    Path(arguments.keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(outputs[0], Path(arguments.keep) / f"callgrind.{'agent' if arguments.client == 'wsfleet' else 'reference'}")
                result.update({
                    f"{'agent' if arguments.client == 'wsfleet' else 'reference'}_instructions": total,
                    f"per_{unit}": round(total / done),
                    f"per_{unit}_without_memset": round((total - memset) / done),
                    "wall_seconds": round(finished_seconds, 1),
                })
                if arguments.client == "wsfleet":
                    # The agent's per-second work (its reports, their gRPC stream, the session's
                    # heartbeats) goes with wall time, not with messages: under valgrind a run
                    # lasts ~50 times longer than at full speed, and that work weighs as much
                    # more. Given apart, per second of the run, so that it can be divided by a
                    # full-speed rate; what remains is the VUs' work, the reference's equivalent.
                    per_second = inclusive_of(outputs[0], PER_SECOND_WORK)
                    result.update({
                        f"vu_work_per_{unit}": round((total - per_second) / done),
                        "per_second_work": per_second,
                        "per_second_work_per_second": round(per_second / finished_seconds),
                    })
            print(json.dumps(result))
    finally:
        server.terminate()
        server.wait(5)


if __name__ == "__main__":
    sys.exit(main())
