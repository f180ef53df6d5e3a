#!/usr/bin/env python3
"""wsfleet's benchmark suite.

Builds in release mode, then runs each rate workload with wsfleet and with the reference client
(bench/reference: a small tokio-tungstenite program that batches its frames and flushes once, with
a 4 KiB read buffer, on one thread) against two servers on loopback: first a server we did not
write, tokio-tungstenite 0.30's own `examples/echo-server.rs` compiled unchanged from the crate
source cargo downloaded (built in a scratch folder outside the repository), then `wsfleet
testserver`. The server is pinned to core 1 and the load generator to core 0; every rate is printed
with the CPU% of the client and of the server. Results go to bench/results/ as JSON and a Markdown
table; docs/benchmarks.md says how to read them.

    python3 bench/run.py                 # the default set: rates on both servers, idle, controller
    python3 bench/run.py --quick         # short runs, for a smoke check
    python3 bench/run.py --only echo     # one workload (connect_rate, echo, echo_1, echo_16, fire,
                                         # idle, controller; scale and soak only when named)
    python3 bench/run.py --only echo_16 --servers testserver   # one series
    python3 bench/run.py --only scale    # 250,000 connections held at once (--scale-connections N);
                                         # raises kernel limits it needs (as root), saying so
    python3 bench/run.py --only soak     # 30 minutes at 20,000 connections; not part of the default set
    python3 bench/run.py --only soak --soak-minutes 3 --soak-connections 2000   # a short soak
    python3 bench/run.py --only script_1 --only script_16 --servers upstream   # a script per
                                         # message: wsfleet's echo with and without a script step
"""

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
# The third-party server: tokio-tungstenite's own echo example, as published. The crate's source
# folder (as cargo downloaded it) is copied here, outside the repository, and built there.
UPSTREAM_CRATE = "tokio-tungstenite-0.30."
UPSTREAM_EXAMPLE = "echo-server"
SCRATCH = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wsfleet-bench"
WSFLEET = RELEASE / "wsfleet"
REFERENCE = RELEASE / "wsfleet-reference"
SIMAGENTS = RELEASE / "wsfleet-simagents"
CLIENT_CORE = "0"
SERVER_CORE = "1"


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_measured(command, timeout):
    """Runs a command to completion; returns (stdout, wall seconds, cpu seconds of it and its
    waited-for descendants)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[0]} did not finish in {timeout} s")
        time.sleep(0.05)
    wall = time.monotonic() - started
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{stderr[-3000:]}")
    return stdout, wall, usage.ru_utime + usage.ru_stime


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def settled_rss(pids, reads=3, gap=0.15):
    """Each process's RSS as the median of `reads` reads `gap` seconds apart, and the largest
    read: a buffer that lives for a few milliseconds (a report being decoded, a request being
    answered) reads as working memory of that moment in one read, not as what the process holds."""
    values = [[] for _ in pids]
    for read in range(reads):
        if read:
            time.sleep(gap)
        for index, pid in enumerate(pids):
            values[index].append(rss_bytes(pid))
    return [sorted(reads_of)[len(reads_of) // 2] for reads_of in values], [max(reads_of) for reads_of in values]


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


CONNTRACK_COUNT = Path("/proc/sys/net/netfilter/nf_conntrack_count")


class Untracked:
    """Keeps loopback traffic to and from one server port out of connection tracking, for as
    long as that server runs. Where netfilter's connection tracking is loaded (Docker loads it),
    every connection is a table entry that outlives its close by two minutes
    (nf_conntrack_tcp_timeout_time_wait): a rate workload opening 10,000+ connections a second
    fills the default table (262,144) within its rounds, the kernel then drops SYNs ("nf_conntrack:
    table full, dropping packet" in dmesg), each dropped SYN costs a connection a 1 s retransmit,
    and the round that meets a full table measures the table, not the client. The rules are the
    raw table's NOTRACK for this port only (the rest of the machine's traffic is tracked as
    before), added as root where iptables exists, removed when the server stops; elsewhere
    nothing changes and `tracking` says so."""

    # Every rule carries this comment with the suite's process id, so that rules a killed suite
    # left behind are found and removed by the next one (`sweep`), and those of a suite still
    # running beside it are not.
    COMMENT = "wsfleet-bench-"

    def __init__(self, port):
        self.rules = []
        if not CONNTRACK_COUNT.exists() or os.geteuid() != 0 or shutil.which("iptables") is None:
            return
        try:
            for chain, interface in (("OUTPUT", "-o"), ("PREROUTING", "-i")):
                for direction in ("--dport", "--sport"):
                    rule = [chain, interface, "lo", "-p", "tcp", direction, str(port),
                            "-m", "comment", "--comment", f"{self.COMMENT}{os.getpid()}", "-j", "CT", "--notrack"]
                    added = subprocess.run(["iptables", "-t", "raw", "-I", *rule], capture_output=True)
                    if added.returncode != 0:
                        self.remove()
                        return
                    self.rules.append(rule)
        except BaseException:
            self.remove()
            raise

    @classmethod
    def sweep(cls):
        """Removes the rules of an earlier suite that was killed before its servers stopped."""
        if os.geteuid() != 0 or shutil.which("iptables") is None:
            return
        listed = subprocess.run(["iptables", "-t", "raw", "-S"], capture_output=True, text=True)
        for line in listed.stdout.splitlines():
            words = shlex.split(line)
            tags = [word for word in words if word.startswith(cls.COMMENT)]
            if not line.startswith("-A ") or not tags:
                continue
            owner = tags[0][len(cls.COMMENT):]
            if owner.isdigit() and Path(f"/proc/{owner}").exists():
                continue
            subprocess.run(["iptables", "-t", "raw", "-D", *words[1:]], capture_output=True)

    @property
    def tracking(self):
        return "off for this server's port" if self.rules else ("on" if CONNTRACK_COUNT.exists() else "not loaded")

    def remove(self):
        for rule in self.rules:
            subprocess.run(["iptables", "-t", "raw", "-D", *rule], capture_output=True)
        self.rules = []


class TestServer:
    """`wsfleet testserver` pinned to the server core."""

    name = "testserver"

    def __init__(self, extra=()):
        self.port = free_port()
        self.untracked = Untracked(self.port)
        self.process = None
        try:
            self.process = subprocess.Popen(
                ["taskset", "-c", SERVER_CORE, str(WSFLEET), "testserver", "--listen", f"127.0.0.1:{self.port}", *extra],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    self.stats()
                    break
                except OSError:
                    time.sleep(0.05)
            self.cpu_start = cpu_seconds(self.process.pid)
            self.wall_start = time.monotonic()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/echo"

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=2) as response:
            return json.load(response)

    def usage(self):
        cpu = cpu_seconds(self.process.pid) - self.cpu_start
        wall = time.monotonic() - self.wall_start
        return {"server_cpu_percent": round(100 * cpu / wall, 1), "server_rss_mb": round(rss_bytes(self.process.pid) / 1e6, 1),
                "connection_tracking": self.untracked.tracking}

    def stop(self):
        try:
            if self.process is not None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
        finally:
            self.untracked.remove()


class UpstreamServer:
    """tokio-tungstenite's `examples/echo-server.rs`, unchanged, pinned to the server core. It
    echoes text and binary messages on any path; it has no stats endpoint, so readiness is a TCP
    connect."""

    name = "upstream"
    binary = None

    def __init__(self):
        self.port = free_port()
        self.untracked = Untracked(self.port)
        self.process = None
        try:
            self.process = subprocess.Popen(
                ["taskset", "-c", SERVER_CORE, str(self.binary), f"127.0.0.1:{self.port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # It panics at the end of each connection (`.expect("Failed to forward messages")`
                # on the AlreadyClosed after a close handshake): without RUST_BACKTRACE a panic
                # costs a message on stderr, not a captured backtrace.
                env={key: value for key, value in os.environ.items() if key not in ("RUST_LOG", "RUST_BACKTRACE")},
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError(f"{self.binary} did not listen on port {self.port} within 10 s")
            self.cpu_start = cpu_seconds(self.process.pid)
            self.wall_start = time.monotonic()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"

    usage = TestServer.usage
    stop = TestServer.stop


SERVERS = {"upstream": UpstreamServer, "testserver": TestServer}


def build_upstream_server():
    """Builds tokio-tungstenite's echo example from the crate source cargo downloaded (fetched
    with `cargo fetch` when absent), in a copy under SCRATCH, with the crate's own Cargo.lock.
    Returns the binary and the crate version."""
    def find():
        registry = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "registry" / "src"
        found = sorted(registry.glob(f"*/{UPSTREAM_CRATE}*"))
        return found[-1] if found else None
    source = find()
    if source is None:
        subprocess.run(["cargo", "fetch"], cwd=ROOT, check=True)
        source = find()
    if source is None:
        raise RuntimeError(f"no {UPSTREAM_CRATE}* crate source under ~/.cargo/registry/src after cargo fetch")
    crate = SCRATCH / source.name
    if not (crate / "Cargo.toml").exists():
        log(f"copying {source} to {crate}")
        SCRATCH.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, crate)
    log(f"building {UPSTREAM_EXAMPLE} of {source.name} (release) in {crate}")
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--example", UPSTREAM_EXAMPLE],
        cwd=crate,
        env={**os.environ, "CARGO_TARGET_DIR": str(crate / "target")},
        check=True,
    )
    return crate / "target" / "release" / "examples" / UPSTREAM_EXAMPLE, source.name


def git_commit():
    """The commit the binaries were built from, with `-dirty` when the work tree had changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        # Results written by an earlier run do not make the build dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def scenario_file(directory, name, text):
    path = Path(directory) / f"{name}.yaml"
    path.write_text(text)
    return path


def wsfleet_run(scenario, directory, timeout):
    out = Path(directory) / "summary.json"
    command = ["taskset", "-c", CLIENT_CORE, str(WSFLEET), "run", str(scenario), "--agents", "1", "--workers", "1", "--quiet", "--out", f"json={out}"]
    _, wall, cpu = run_measured(command, timeout)
    return json.loads(out.read_text()), wall, cpu


def reference_run(url, arguments, timeout):
    command = ["taskset", "-c", CLIENT_CORE, str(REFERENCE), "--url", url, *arguments]
    stdout, wall, cpu = run_measured(command, timeout)
    return json.loads(stdout.strip().splitlines()[-1]), wall, cpu


def ratio(a, b):
    return round(a / b, 3) if b else None


def median(values):
    values = sorted(value for value in values if value is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else round((values[middle - 1] + values[middle]) / 2, 3)


def time_wait_sockets():
    """TCP sockets in TIME_WAIT on this machine (/proc/net/sockstat's `tw`)."""
    try:
        fields = next(line for line in Path("/proc/net/sockstat").read_text().splitlines() if line.startswith("TCP:")).split()
        return int(fields[fields.index("tw") + 1])
    except (OSError, StopIteration, ValueError, IndexError):
        return 0


def settle_time_wait(bound=2000, limit=75):
    """Waits (at most `limit` s) until the machine holds fewer than `bound` sockets in TIME_WAIT.
    A connection rate round leaves ~50,000 of them (the server closes first and keeps each for
    60 s); the next side's connections then share the kernel's hash tables with them, and a side
    that meets a full TIME_WAIT table (tcp_max_tw_buckets) runs differently again: without the
    wait, rounds slowed from ~14k to ~10k connections/s as a suite went on, whichever client ran."""
    deadline = time.monotonic() + limit
    waiting = time_wait_sockets()
    if waiting >= bound:
        log(f"  waiting for {waiting} TIME_WAIT sockets to expire (below {bound}) ...")
    while time_wait_sockets() >= bound and time.monotonic() < deadline:
        time.sleep(1)


def paired(wsfleet_side, reference_side, rounds, server_class):
    """Runs both clients `rounds` times, alternating which goes first, each against a fresh
    server of `server_class`; reports every round and the medians (rates, CPU of the client and
    of the server, and the ratio of each round)."""
    measured = []
    for index in range(rounds):
        sides = [("wsfleet", wsfleet_side), ("reference", reference_side)]
        if index % 2:
            sides.reverse()
        entry = {}
        for name, side in sides:
            settle_time_wait()
            server = server_class()
            try:
                entry[name] = side(server)
                entry[name].update(server.usage())
            finally:
                server.stop()
        entry["ratio"] = ratio(entry["wsfleet"]["rate"], entry["reference"]["rate"])
        # The work each client does per second of its own CPU: when a round's client did not
        # get its whole core (another tenant of the machine took some), this still compares.
        entry["ratio_per_cpu_second"] = ratio(
            entry["wsfleet"]["rate"] / max(entry["wsfleet"]["cpu_percent"], 1e-9),
            entry["reference"]["rate"] / max(entry["reference"]["cpu_percent"], 1e-9),
        )
        log(f"  {server_class.name} round {index + 1}: wsfleet {entry['wsfleet']['rate']}/s at {entry['wsfleet']['cpu_percent']}% CPU "
            f"(server {entry['wsfleet']['server_cpu_percent']}%), reference {entry['reference']['rate']}/s at "
            f"{entry['reference']['cpu_percent']}% CPU (server {entry['reference']['server_cpu_percent']}%), ratio {entry['ratio']}, "
            f"per CPU-second {entry['ratio_per_cpu_second']}")
        measured.append(entry)
    summary = {
        "rounds": measured,
        "ratio": median(entry["ratio"] for entry in measured),
        "ratio_per_cpu_second": median(entry["ratio_per_cpu_second"] for entry in measured),
    }
    for name in ("wsfleet", "reference"):
        keys = [key for key, value in measured[0][name].items() if isinstance(value, (int, float))]
        summary[name] = {key: median(entry[name][key] for entry in measured) for key in keys}
    return summary


def wsfleet_rate(scenario_text, counter, seconds):
    """A `wsfleet run` side: the rate of `counter` over the run's duration."""
    def side(server):
        with tempfile.TemporaryDirectory() as directory:
            scenario = scenario_file(directory, "workload", scenario_text.replace("URL", server.url))
            summary, _, cpu = wsfleet_run(scenario, directory, seconds + 60)
        counters = summary["totals"]["counters"]
        duration = summary["duration_seconds"]
        return {
            "rate": round(counters[counter] / duration, 1),
            "cpu_percent": round(100 * cpu / duration, 1),
            "failed": counters.get("connections_failed", 0),
        }
    return side


def reference_rate(arguments, seconds):
    def side(server):
        reference, _, cpu = reference_run(server.url, arguments, seconds + 60)
        return {"rate": round(reference["rate"], 1), "cpu_percent": round(100 * cpu / reference["seconds"], 1), "failed": reference.get("failed", 0)}
    return side


def series(wsfleet_side, reference_side, rounds, servers):
    """The paired rounds against each server: the upstream example first (the primary series),
    then `wsfleet testserver`."""
    results = {}
    for name in servers:
        results[name] = paired(wsfleet_side, reference_side, rounds, SERVERS[name])
    return results


def connect_rate(seconds, rounds, servers):
    concurrency = 50
    scenario = (
        f"name: connect-rate\nload: {{ vus: {concurrency}, duration: {seconds}s, graceful_stop: 2s }}\n"
        f"steps:\n  - connect: {{ url: 'URL' }}\n  - close: {{ code: 1000 }}\n"
    )
    return series(
        wsfleet_rate(scenario, "connections_opened", seconds),
        reference_rate(["connect-rate", "--concurrency", str(concurrency), "--duration", f"{seconds}s"], seconds),
        rounds,
        servers,
    )


def hold_and_measure_rss(pid_of_client, server, connections, timeout):
    """Waits until the server holds `connections`, then reads the client's RSS."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.stats()["open_connections"] >= connections:
            time.sleep(0.5)
            return rss_bytes(pid_of_client())
        time.sleep(0.1)
    raise RuntimeError(f"the server never held {connections} connections")


def idle(directory, counts):
    results = {"wsfleet": {}, "reference": {}}
    for count in counts:
        # Long enough that the last connection opens before the first closes: past ~14,000
        # connections to one server each new one costs the kernel a walk of the port range
        # (see SCALE_PORT_SHARE), and on a busy machine the last thousand took ~15 s.
        hold = 8 + count // 500
        server = TestServer()
        try:
            scenario = scenario_file(
                directory,
                f"idle_{count}",
                f"name: idle\nload: {{ vus: {count}, iterations: 1 }}\n"
                f"steps:\n  - connect: {{ url: '{server.url}', timeout: 30s }}\n  - think: {hold}s\n  - close: {{ code: 1000 }}\n",
            )
            out = Path(directory) / "idle.json"
            run = subprocess.Popen(
                ["taskset", "-c", CLIENT_CORE, str(WSFLEET), "run", str(scenario), "--agents", "1", "--workers", "1", "--quiet", "--out", f"json={out}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

            def agent_pid():
                children = children_of(run.pid)
                return children[0] if children else run.pid

            # The agent's footprint before the run: measured as soon as it exists.
            deadline = time.monotonic() + 20
            while not children_of(run.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            baseline = rss_bytes(agent_pid())
            held = hold_and_measure_rss(agent_pid, server, count, hold + 60)
            run.wait(hold + 120)
            results["wsfleet"][str(count)] = {"rss_mb": round(held / 1e6, 1), "bytes_per_connection": round((held - baseline) / count)}
        finally:
            server.stop()
        server = TestServer()
        try:
            client = subprocess.Popen(
                ["taskset", "-c", CLIENT_CORE, str(REFERENCE), "--url", server.url, "idle", "--connections", str(count), "--hold", f"{hold}s"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.2)
            baseline = rss_bytes(client.pid)
            held = hold_and_measure_rss(lambda: client.pid, server, count, hold + 60)
            client.wait(hold + 60)
            results["reference"][str(count)] = {"rss_mb": round(held / 1e6, 1), "bytes_per_connection": round((held - baseline) / count)}
        finally:
            server.stop()
    # The marginal cost of a connection: the RSS slope between the smallest and largest counts,
    # which cancels each process's fixed footprint (a baseline read at start can race the first
    # connections).
    low, high = str(min(counts)), str(max(counts))
    for side in ("wsfleet", "reference"):
        spread = (results[side][high]["rss_mb"] - results[side][low]["rss_mb"]) * 1e6
        results[side]["marginal_bytes_per_connection"] = round(spread / (int(high) - int(low)))
    return results


def idle_servers(count, servers):
    """Each server's memory per idle WebSocket connection: the reference client opens `count`
    connections and holds them; the server's RSS growth from before the first to after the last,
    divided by `count` (the upstream example reads with tokio-tungstenite's default 128 KiB read
    buffer, zero-filled at its first read)."""
    results = {}
    for name in servers:
        server = SERVERS[name]()
        client = None
        try:
            time.sleep(0.3)
            baseline = rss_bytes(server.process.pid)
            client = subprocess.Popen(
                ["taskset", "-c", CLIENT_CORE, str(REFERENCE), "--url", server.url, "idle", "--connections", str(count), "--hold", "60s"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            # The reference prints its line once every connection is open.
            if not client.stdout.readline():
                raise RuntimeError(f"the reference did not hold {count} connections against {name}")
            time.sleep(1)
            held = rss_bytes(server.process.pid)
            results[name] = {"connections": count, "rss_mb": round(held / 1e6, 1), "bytes_per_connection": round((held - baseline) / count)}
            log(f"  {name}: {count} idle connections, {results[name]['bytes_per_connection']} bytes each")
        finally:
            if client and client.poll() is None:
                client.kill()
                client.wait()
            server.stop()
    return results


def echo(seconds, in_flight, rounds, servers):
    connections = 100
    sends = "".join("        - send: { text: '" + "x" * 64 + "' }\n" for _ in range(in_flight))
    receives = "".join("        - receive: { timeout: 5s }\n" for _ in range(in_flight))
    scenario = (
        f"name: echo\nload: {{ vus: {connections}, iterations: 1 }}\n"
        f"steps:\n  - connect: {{ url: 'URL', timeout: 30s }}\n"
        f"  - repeat:\n      duration: {seconds}s\n      steps:\n{sends}{receives}  - close: {{ code: 1000 }}\n"
    )
    return series(
        wsfleet_rate(scenario, "messages_received", seconds),
        reference_rate(["echo", "--connections", str(connections), "--in-flight", str(in_flight), "--duration", f"{seconds}s"], seconds),
        rounds,
        servers,
    )


def script_cost(seconds, in_flight, rounds, servers):
    """Echo with `in_flight` messages in flight (as `echo`), wsfleet against itself: with a small
    script step before each send (`let seq = iteration + 1;`: one value read, one set) and
    without. In each round's entry `wsfleet` is the run with scripts, `reference` the run
    without; the ratio is the echo rate a script per message leaves."""
    connections = 100

    def scenario(script):
        step = "        - script: 'let seq = iteration + 1;'\n" if script else ""
        sends = "".join(f"{step}        - send: {{ text: '{'x' * 64}' }}\n" for _ in range(in_flight))
        receives = "".join("        - receive: { timeout: 5s }\n" for _ in range(in_flight))
        return (
            f"name: echo\nload: {{ vus: {connections}, iterations: 1 }}\n"
            f"steps:\n  - connect: {{ url: 'URL', timeout: 30s }}\n"
            f"  - repeat:\n      duration: {seconds}s\n      steps:\n{sends}{receives}  - close: {{ code: 1000 }}\n"
        )

    log("  (in these rounds `wsfleet` runs a script before each send, `reference` is wsfleet without)")
    return series(
        wsfleet_rate(scenario(True), "messages_received", seconds),
        wsfleet_rate(scenario(False), "messages_received", seconds),
        rounds,
        servers,
    )


def fire(seconds, rounds, servers):
    """Fire-and-count: sends never wait for the echoes; a handler takes (counts) them as they
    come, read while the sends wait for the socket. The reference feeds 64 messages per write and
    reads whatever has come between its writes."""
    connections = 100
    scenario = (
        f"name: fire\nload: {{ vus: {connections}, iterations: 1 }}\n"
        f"on_message:\n  - name: echoes\n"
        f"steps:\n  - connect: {{ url: 'URL', timeout: 30s }}\n"
        f"  - repeat:\n      duration: {seconds}s\n      steps:\n        - send: {{ text: '{'x' * 64}' }}\n"
        f"  - close: {{ code: 1000, timeout: 30s }}\n"
    )
    return series(
        wsfleet_rate(scenario, "messages_received", seconds),
        reference_rate(["fire", "--connections", str(connections), "--duration", f"{seconds}s"], seconds),
        rounds,
        servers,
    )


def controller(directory, seconds, agents):
    port = free_port()
    scenario = scenario_file(
        directory,
        "controller",
        f"name: controller-load\nload: {{ vus: {agents}, duration: {seconds}s }}\nsteps:\n  - connect: {{ url: 'ws://127.0.0.1:9/' }}\n",
    )
    out = Path(directory) / "controller.json"
    command = ["taskset", "-c", CLIENT_CORE, str(WSFLEET), "controller", "--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0", "--run", str(scenario), "--agents", str(agents), "--wait", "120s", "--out", f"json={out}"]
    # A file, not a pipe: nobody reads a pipe while the run goes on, and a full one would block the
    # controller's logging (it logs each agent that attaches).
    log_file = open(Path(directory) / "controller.log", "w")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    time.sleep(0.5)
    simulator = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, str(SIMAGENTS), "--controller", f"http://127.0.0.1:{port}", "--agents", str(agents), "--duration", f"{seconds}s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Measure the controller while the run is on: from the first report to the last.
    deadline = time.monotonic() + 180
    cpu_start = wall_start = None
    peak_rss = 0
    while process.poll() is None and time.monotonic() < deadline:
        if cpu_start is None and time.monotonic() > 0:
            cpu_start, wall_start = cpu_seconds(process.pid), time.monotonic()
        peak_rss = max(peak_rss, rss_bytes(process.pid))
        cpu_end, wall_end = cpu_seconds(process.pid), time.monotonic()
        time.sleep(0.2)
    process.wait(30)
    simulator.wait(60)
    log_file.close()
    summary = json.loads(out.read_text())
    cpu_percent = 100 * (cpu_end - cpu_start) / (wall_end - wall_start)
    intervals = len(summary["intervals"])
    return {
        "agents": agents,
        "controller_cpu_percent": round(cpu_percent, 1),
        "controller_peak_rss_mb": round(peak_rss / 1e6, 1),
        "rss_kb_per_agent": round(peak_rss / agents / 1e3, 1),
        "intervals_aggregated": intervals,
        "reports_expected": agents * seconds,
        "messages_sent_total": summary["totals"]["counters"]["messages_sent"],
    }


def http_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_for_test_servers(ports):
    """Waits (10 s each at most) until every test server on `ports` answers `/stats`."""
    for port in ports:
        deadline = time.monotonic() + 10
        while True:
            try:
                http_json(f"http://127.0.0.1:{port}/stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def start_fleet(directory, name, scenario, agents, sources):
    """A `wsfleet controller` (history in `directory`) that runs `scenario` once `agents` agent
    processes, each over the `sources` local addresses, have attached; returns its API port, the
    summary's and the history's paths, the controller process and the agents'."""
    grpc, api = free_port(), free_port()
    out = Path(directory) / f"{name}.json"
    data_dir = Path(directory) / f"{name}-data"
    controller = subprocess.Popen(
        [str(WSFLEET), "controller", "--listen", f"127.0.0.1:{grpc}", "--http", f"127.0.0.1:{api}", "--data-dir", str(data_dir),
         "--run", str(scenario), "--agents", str(agents), "--wait", "120s", "--out", f"json={out}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    agent_processes = [
        subprocess.Popen([str(WSFLEET), "agent", "--controller", f"http://127.0.0.1:{grpc}", "--id", f"{name}-{index}",
                          "--source-addresses", sources, "--once"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for index in range(agents)
    ]
    return api, out, data_dir, controller, agent_processes


def spawn_test_servers(count):
    """`count` wsfleet test servers, one free port each: their ports and processes."""
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen([str(WSFLEET), "testserver", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports
    ]
    return ports, processes


def write_server_feed(path, ports):
    """A data feed (CSV, column `url`) with each test server's echo URL."""
    path.write_text("url\n" + "".join(f"ws://127.0.0.1:{port}/echo\n" for port in ports))


# Files an agent or a test server keeps beside its connections (listeners, gRPC, logs), and room
# left under the open-file limit so that a process is never at its edge.
SCALE_FILES_SPARE = 2000
# The share of the ephemeral port range one source address is asked to give: a socket bound to
# (address, port 0) before it connects (as the agent does with --source-addresses) takes a port of
# that address's range whatever the destination, so every connection from one address needs a port
# of its own. The kernel looks in one half of the range first (odd ports for bind(), even ones for
# connect()) and walks all of it, under a lock, before it tries the other: past half the range,
# each new connection costs a walk of ~14,000 ports (1,000 connections to one server past 14,000
# came at ~64 a second on this machine). Stay under the first half.
SCALE_PORT_SHARE = 0.45
# Memory the run needs, per connection (agent, server and the kernel's two sockets), and above it.
SCALE_BYTES_PER_CONNECTION = 24_000
SCALE_BYTES_SPARE = 2 * 1024**3


def read_sysctl(name):
    return Path("/proc/sys", *name.split(".")).read_text().split()


def ensure_sysctl(name, needed, why, changed):
    """Raises the kernel setting `name` to `needed` when it is lower (root only), saying so; fails
    with what to run when it cannot. The setting is left raised after the run: lowering a limit
    while the run's closed connections still hold their entries would refuse other new ones."""
    path = Path("/proc/sys", *name.split("."))
    current = int(read_sysctl(name)[0])
    if current >= needed:
        log(f"  {name} = {current} (needed: at least {needed}, {why})")
        return
    if os.geteuid() != 0:
        raise SystemExit(f"scale: {name} is {current}, {why} needs at least {needed}: run `sysctl -w {name}={needed}` as root, then again")
    path.write_text(str(needed))
    log(f"  {name}: {current} -> {needed} ({why}); left at {needed} after the run")
    changed[name] = {"was": current, "set": needed}


def scale_plan(connections, open_files):
    """Sizes the scale workload from its connection count and the machine's limits: agents and
    test servers (each under `open_files`), source addresses (each under a share of the ephemeral
    ports), and the kernel settings it needs (checked; raised where too low, with a line saying so).
    Returns the plan and the settings it changed."""
    if connections < 1:
        raise SystemExit(f"scale: --scale-connections must be at least 1, not {connections}")
    per_process = open_files - SCALE_FILES_SPARE
    if per_process < 1000:
        raise SystemExit(f"scale: the open-file limit is {open_files}; raise it (ulimit -Hn) to hold connections in a few processes")
    processes = -(-connections // per_process)
    low, high = (int(value) for value in read_sysctl("net.ipv4.ip_local_port_range"))
    per_address = int((high - low + 1) * SCALE_PORT_SHARE)
    addresses = -(-connections // per_address)
    if addresses > 254:
        raise SystemExit(f"scale: {connections} connections need {addresses} source addresses of 127.0.0.0/8 at {per_address} each; at most 254")
    available = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable:"))
    needed = connections * SCALE_BYTES_PER_CONNECTION + SCALE_BYTES_SPARE
    if needed > available:
        raise SystemExit(f"scale: {connections} connections need about {needed / 1e9:.1f} GB of memory, {available / 1e9:.1f} GB are available: ask for fewer")
    log(f"scale: {connections} connections: {processes} agents and {processes} test servers (at most {per_process} connections each under "
        f"{open_files} open files), source addresses 127.0.0.2-127.0.0.{addresses + 1} ({per_address} each at most: "
        f"{high - low + 1} ephemeral ports {low}-{high}); kernel settings:")
    changed = {}
    # Both ends of every connection are files of this machine, plus the other work on it.
    files_in_use = int(read_sysctl("fs.file-nr")[0])
    ensure_sysctl("fs.file-max", files_in_use + 2 * connections + 65536, "both ends of every connection, beside the files open now", changed)
    conntrack = Path("/proc/sys/net/netfilter/nf_conntrack_max")
    if conntrack.exists():
        # Connection tracking is loaded: each connection is an entry, and a closed one keeps its
        # entry for two minutes; a full table drops new connections' packets.
        tracked = int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())
        ensure_sysctl("net.netfilter.nf_conntrack_max", tracked + connections + 65536,
                      f"one tracked entry a connection, beside the {tracked} tracked now", changed)
    plan = {"agents": processes, "servers": processes, "sources": f"127.0.0.2-127.0.0.{addresses + 1}",
            "per_process": per_process, "per_address": per_address}
    return plan, changed


def scale(directory, connections, agents, servers, sources, hold):
    """Workload 4: `connections` held at once by `agents` agent processes attached to one
    controller, against `servers` test-server processes (one port each; a data feed spreads VUs
    over them), the agents spreading their connections over the `sources` local addresses. The
    controller's active-connection count must equal the servers' own counts."""
    ports, server_processes = spawn_test_servers(servers)
    controller = agent_processes = None
    try:
        wait_for_test_servers(ports)
        write_server_feed(Path(directory) / "servers.csv", ports)
        scenario = scenario_file(
            directory,
            "scale",
            f"name: scale\ndata:\n  servers: {{ csv: servers.csv, order: unique, on_exhausted: wrap }}\n"
            f"load: {{ vus: {connections}, iterations: 1, max_duration: 10m }}\n"
            f"steps:\n  - connect: {{ url: '${{servers.url}}', timeout: 120s }}\n  - think: {hold}s\n  - close: {{ code: 1000, timeout: 30s }}\n",
        )
        api, out, data_dir, controller, agent_processes = start_fleet(directory, "scale", scenario, agents, sources)
        started = time.monotonic()
        cpu_start = {process.pid: cpu_seconds(process.pid) for process in [controller, *agent_processes, *server_processes]}
        held = None
        deadline = started + hold + 600
        while controller.poll() is None and time.monotonic() < deadline and held is None:
            time.sleep(1)
            try:
                status = http_json(f"http://127.0.0.1:{api}/api/status")
            except OSError:
                continue
            run = status.get("run") or {}
            gauge = ((run.get("last") or {}).get("gauges") or {}).get("active_connections", 0)
            if gauge < connections:
                continue
            server_counts = [http_json(f"http://127.0.0.1:{port}/stats")["open_connections"] for port in ports]
            if sum(server_counts) == connections:
                held = {
                    "seconds_to_hold_all": round(time.monotonic() - started, 1),
                    "controller_active_connections": gauge,
                    "servers_open_connections": server_counts,
                    "agents_rss_mb": [round(rss_bytes(process.pid) / 1e6, 1) for process in agent_processes],
                    "servers_rss_mb": [round(rss_bytes(process.pid) / 1e6, 1) for process in server_processes],
                    "controller_rss_mb": round(rss_bytes(controller.pid) / 1e6, 1),
                }
        wall = time.monotonic() - started
        cpu = {pid: cpu_seconds(pid) - start for pid, start in cpu_start.items()}
        controller.wait(hold + 600)
        summary = json.loads(out.read_text())
        counters = summary["totals"]["counters"]
        result = {
            "connections": connections,
            "agents": agents,
            "servers": servers,
            "source_addresses": sources,
            "held": held,
            "connections_opened": counters["connections_opened"],
            "connections_failed": counters["connections_failed"],
            "connections_closed": counters["connections_closed"],
            "peak_active_connections": summary["totals"]["peak_active_connections"],
            "exact": held is not None and counters["connections_opened"] == connections and counters["connections_failed"] == 0,
            "agents_cpu_percent": round(100 * sum(cpu[process.pid] for process in agent_processes) / wall, 1),
            "servers_cpu_percent": round(100 * sum(cpu[process.pid] for process in server_processes) / wall, 1),
            "controller_cpu_percent": round(100 * cpu[controller.pid] / wall, 1),
        }
        if held:
            result["agent_kb_per_connection"] = round(sum(held["agents_rss_mb"]) * 1e3 / connections, 2)
            result["server_kb_per_connection"] = round(sum(held["servers_rss_mb"]) * 1e3 / connections, 2)
        return result
    finally:
        for process in [*(agent_processes or []), *([controller] if controller else []), *server_processes]:
            if process.poll() is None:
                process.terminate()
        for process in [*(agent_processes or []), *([controller] if controller else []), *server_processes]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def linear_slope(points):
    """The least-squares slope of (x, y) points; 0 with fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def flatness(points, tolerance):
    """How flat a series of (seconds, value) is: the largest deviation of a sample from the
    series' mean, as a fraction of the mean, and the linear trend per hour as a fraction of the
    mean. Flat when every sample is within `tolerance` of the mean."""
    values = [value for _, value in points]
    if not values:
        return {"samples": 0, "flat": False}
    mean = sum(values) / len(values)
    deviation = max(abs(value - mean) for value in values) / mean if mean else 0.0
    slope = linear_slope(points)
    return {
        "samples": len(values),
        "mean_mb": round(mean / 1e6, 2),
        "min_mb": round(min(values) / 1e6, 2),
        "max_mb": round(max(values) / 1e6, 2),
        "max_deviation_percent": round(100 * deviation, 2),
        "trend_mb_per_hour": round(slope * 3600 / 1e6, 2),
        "flat": deviation <= tolerance,
    }


def directory_bytes(directory):
    """The bytes of every file under `directory` (the history's database, its WAL and shared
    memory)."""
    total = 0
    for path in Path(directory).rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def history_bytes(data_dir):
    """The history database's size as SQLite sees it (pages in use, the WAL's committed pages
    included), read through a read-only connection beside the controller's; the files' size
    when it cannot be read."""
    database = Path(data_dir) / "wsfleet.db"
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2)
        try:
            page_count = connection.execute("PRAGMA page_count").fetchone()[0]
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            return page_count * page_size
        finally:
            connection.close()
    except sqlite3.Error:
        return directory_bytes(data_dir)


def soak(directory, connections, minutes, agents, servers, sources, message_every, sample_every, warm_up):
    """Workload 6: a steady load for `minutes`: `connections` held by `agents` agent processes
    attached to one controller (its history in a data directory), against `servers` test
    servers, each connection sending a 64-byte message and awaiting its echo every
    `message_every` seconds. Every `sample_every` seconds it samples the RSS of the agents, the
    controller and the servers, and the size of the history's files. After `warm_up` seconds
    (and while every connection is held), RSS must stay within +-2% of its mean; the history's
    growth is reported per hour."""
    seconds = int(minutes * 60)
    ports, server_processes = spawn_test_servers(servers)
    controller = agent_processes = None
    try:
        wait_for_test_servers(ports)
        write_server_feed(Path(directory) / "soak-servers.csv", ports)
        # One iteration per VU that lasts the whole run: connect once, then a message and its
        # echo every `message_every` seconds until the end.
        scenario = scenario_file(
            directory,
            "soak",
            f"name: soak\ndata:\n  servers: {{ csv: soak-servers.csv, order: unique, on_exhausted: wrap }}\n"
            f"load: {{ vus: {connections}, iterations: 1, max_duration: {seconds + 600}s }}\n"
            f"steps:\n  - connect: {{ url: '${{servers.url}}', timeout: 120s }}\n"
            f"  - repeat:\n      duration: {seconds}s\n      steps:\n"
            f"        - send: {{ name: message, text: '{'x' * 64}' }}\n"
            f"        - receive: {{ name: echo, timeout: 30s }}\n"
            f"        - think: {round(message_every * 1000)}ms\n"
            f"  - close: {{ code: 1000, timeout: 30s }}\n",
        )
        api, out, data_dir, controller, agent_processes = start_fleet(directory, "soak", scenario, agents, sources)
        started = time.monotonic()
        samples = []
        next_sample = started
        deadline = started + seconds + 900
        while controller.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            if now < next_sample:
                time.sleep(min(0.5, next_sample - now))
                continue
            next_sample += sample_every
            # Memory first: the status request below makes the controller build an answer, whose
            # buffers would otherwise be read as what it holds.
            processes = [*agent_processes, controller, *server_processes]
            settled, largest = settled_rss([process.pid for process in processes])
            try:
                status = http_json(f"http://127.0.0.1:{api}/api/status")
            except OSError:
                status = {}
            run = status.get("run") or {}
            last = run.get("last") or {}
            try:
                sample = {
                    "seconds": round(now - started, 1),
                    "active_connections": (last.get("gauges") or {}).get("active_connections", 0),
                    "servers_open_connections": sum(http_json(f"http://127.0.0.1:{port}/stats")["open_connections"] for port in ports),
                    "agents_rss": settled[:agents],
                    "controller_rss": settled[agents],
                    "controller_rss_largest_read": largest[agents],
                    "servers_rss": settled[agents + 1:],
                    "history_bytes": history_bytes(data_dir),
                    "history_files_bytes": directory_bytes(data_dir),
                }
            except OSError:
                continue
            samples.append(sample)
            log(f"  {sample['seconds']:>7.0f} s: {sample['active_connections']} held ({sample['servers_open_connections']} by the servers), agents "
                f"{sum(sample['agents_rss']) / 1e6:.1f} MB, controller {sample['controller_rss'] / 1e6:.1f} MB, "
                f"history {sample['history_bytes'] / 1e6:.2f} MB")
        wall = time.monotonic() - started
        controller.wait(900)
        summary = json.loads(out.read_text())
        counters = summary["totals"]["counters"]
        # What the history holds per second of the run.
        with sqlite3.connect(f"file:{data_dir / 'wsfleet.db'}?mode=ro", uri=True) as database:
            stored_intervals, interval_bytes = database.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data_json)), 0) FROM intervals").fetchone()
        # The steady part: past the warm-up, with every connection held (not the ramp-down).
        steady = [sample for sample in samples if sample["seconds"] >= warm_up and sample["active_connections"] == connections]
        tolerance = 0.02
        agents_flat = [flatness([(sample["seconds"], sample["agents_rss"][index]) for sample in steady], tolerance) for index in range(agents)]
        fleet_flat = flatness([(sample["seconds"], sum(sample["agents_rss"])) for sample in steady], tolerance)
        controller_flat = flatness([(sample["seconds"], sample["controller_rss"]) for sample in steady], tolerance)
        # The same with each sample's largest read: how far the working memory of a moment goes.
        controller_largest = flatness([(sample["seconds"], sample["controller_rss_largest_read"]) for sample in steady], tolerance)
        servers_flat = flatness([(sample["seconds"], sum(sample["servers_rss"])) for sample in steady], tolerance)
        history_slope = linear_slope([(sample["seconds"], sample["history_bytes"]) for sample in steady])
        steady_span = steady[-1]["seconds"] - steady[0]["seconds"] if len(steady) > 1 else 0
        result = {
            "connections": connections,
            "minutes": minutes,
            "wall_seconds": round(wall, 1),
            "agents": agents,
            "servers": servers,
            "source_addresses": sources,
            "message_every_seconds": message_every,
            "sample_every_seconds": sample_every,
            "warm_up_seconds": warm_up,
            "steady_samples": len(steady),
            "steady_seconds": round(steady_span, 1),
            "connections_opened": counters["connections_opened"],
            "connections_failed": counters["connections_failed"],
            "messages_sent": counters.get("messages_sent", 0),
            "messages_received": counters.get("messages_received", 0),
            "outcome": summary.get("outcome"),
            "agents_rss": agents_flat,
            "agents_rss_total": fleet_flat,
            "controller_rss": controller_flat,
            "controller_rss_largest_read": controller_largest,
            "servers_rss_total": servers_flat,
            "rss_flat": all(entry["flat"] for entry in agents_flat) and controller_flat["flat"],
            "history_first_mb": round(samples[0]["history_bytes"] / 1e6, 2) if samples else None,
            "history_final_mb": round(history_bytes(data_dir) / 1e6, 2),
            "history_growth_mb_per_hour": round(history_slope * 3600 / 1e6, 2),
            "history_intervals": stored_intervals,
            "history_bytes_per_interval": round(interval_bytes / stored_intervals) if stored_intervals else None,
            "samples": samples,
        }
        return result
    finally:
        for process in [*(agent_processes or []), *([controller] if controller else []), *server_processes]:
            if process.poll() is None:
                process.terminate()
        for process in [*(agent_processes or []), *([controller] if controller else []), *server_processes]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


RATE_WORKLOADS = ("connect_rate", "echo_1", "echo_16", "fire")


def rate_row(name, server, result, server_cpu):
    """A paired series' row: both rates, the ratios, each side's CPU% (and the server's)."""
    by_round = ", ".join(str(entry["ratio"]) for entry in result.get("rounds", []))
    row = (f"| {name} | {server} | {result['wsfleet']['rate']}/s | {result['reference']['rate']}/s | {result['ratio']} | {by_round} | "
           f"{result.get('ratio_per_cpu_second')} | {result['wsfleet']['cpu_percent']} | {result['reference']['cpu_percent']} |")
    if server_cpu:
        row += f" {result['wsfleet'].get('server_cpu_percent')} / {result['reference'].get('server_cpu_percent')} |"
    return row


def table(results):
    lines = []
    rate_names = [name for name in RATE_WORKLOADS if name in results]
    if rate_names:
        lines = [
            f"Rates and CPU are medians of {results.get('rounds', 1)} rounds of {results.get('seconds')} s; the ratio is the median "
            f"of each round's ratio (wsfleet / reference, same server, same round). Client on core {CLIENT_CORE}, server on core "
            f"{SERVER_CORE}. Measured at {results.get('commit')}; upstream server: {results.get('upstream')}.",
            "",
            "| workload | server | wsfleet | reference | ratio | ratios by round | ratio per CPU-second | wsfleet CPU% | reference CPU% | server CPU% (wsfleet's run / reference's) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
    for name in rate_names:
        for server, result in results[name].items():
            lines.append(rate_row(name, server, result, server_cpu=True))
    scripted = [name for name in ("script_1", "script_16") if name in results]
    if scripted:
        lines.append("")
        lines.append("A script per message: wsfleet's echo with a `script` step (`let seq = iteration + 1;`) before each send, against "
                     "the same echo without, same server, same round.")
        lines.append("")
        lines.append("| workload | server | with the script | without | ratio | ratios by round | ratio per CPU-second | CPU% with | CPU% without |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in scripted:
            for server, result in results[name].items():
                lines.append(rate_row(name, server, result, server_cpu=False))
    compared = [name for name in rate_names if {"upstream", "testserver"} <= set(results[name])]
    if compared:
        lines.append("")
        lines.append("The servers compared: each client's median rate against `wsfleet testserver` divided by its median rate against the upstream example.")
        lines.append("")
        lines.append("| workload | reference: testserver / upstream | wsfleet: testserver / upstream |")
        lines.append("| --- | --- | --- |")
        for name in compared:
            upstream, testserver = results[name]["upstream"], results[name]["testserver"]
            lines.append(
                f"| {name} | {ratio(testserver['reference']['rate'], upstream['reference']['rate'])} "
                f"({testserver['reference']['rate']} / {upstream['reference']['rate']}) | "
                f"{ratio(testserver['wsfleet']['rate'], upstream['wsfleet']['rate'])} "
                f"({testserver['wsfleet']['rate']} / {upstream['wsfleet']['rate']}) |"
            )
    if "idle" in results:
        lines.append("")
        lines.append("| idle connections | wsfleet RSS (MB) | wsfleet bytes/conn | reference RSS (MB) | reference bytes/conn |")
        lines.append("| --- | --- | --- | --- | --- |")
        for count, mine in results["idle"]["wsfleet"].items():
            if not isinstance(mine, dict):
                continue
            reference = results["idle"]["reference"].get(count, {})
            lines.append(f"| {count} | {mine['rss_mb']} | {mine['bytes_per_connection']} | {reference.get('rss_mb')} | {reference.get('bytes_per_connection')} |")
        lines.append(f"| marginal (slope) | | {results['idle']['wsfleet']['marginal_bytes_per_connection']} | | {results['idle']['reference']['marginal_bytes_per_connection']} |")
    if "idle_servers" in results:
        lines.append("")
        lines.append("| server | idle connections (reference client) | server RSS (MB) | server bytes/conn |")
        lines.append("| --- | --- | --- | --- |")
        for name, entry in results["idle_servers"].items():
            lines.append(f"| {name} | {entry['connections']} | {entry['rss_mb']} | {entry['bytes_per_connection']} |")
    if "scale" in results:
        result = results["scale"]
        held = result.get("held") or {}
        lines.append("")
        lines.append(
            f"scale: {result['connections']} connections on {result['agents']} agents and {result['servers']} test servers "
            f"({result['source_addresses']}): {'exact' if result['exact'] else 'NOT exact'}; all held after "
            f"{held.get('seconds_to_hold_all')} s; controller {held.get('controller_active_connections')} = servers "
            f"{sum(held.get('servers_open_connections') or [0])}; agents {result.get('agent_kb_per_connection')} kB/conn, "
            f"servers {result.get('server_kb_per_connection')} kB/conn; CPU agents {result['agents_cpu_percent']}%, "
            f"servers {result['servers_cpu_percent']}%, controller {result['controller_cpu_percent']}%"
            + (f"; each held {result['hold_seconds']} s" if "hold_seconds" in result else "")
            + "".join(f"; {name} raised {change['was']} -> {change['set']}" for name, change in (result.get("sysctl_changed") or {}).items())
        )
    if "controller" in results:
        result = results["controller"]
        lines.append("")
        lines.append(f"controller with {result['agents']} simulated agents: {result['controller_cpu_percent']}% CPU, "
                     f"{result['controller_peak_rss_mb']} MB peak RSS ({result['rss_kb_per_agent']} kB/agent)")
    if "soak" in results:
        result = results["soak"]
        def rss(entry):
            return (f"{entry.get('mean_mb')} MB (max deviation {entry.get('max_deviation_percent')}%, "
                    f"trend {entry.get('trend_mb_per_hour')} MB/h)")
        lines.append("")
        lines.append(
            f"soak: {result['connections']} connections for {result['minutes']} min ({result['wall_seconds']} s wall) on "
            f"{result['agents']} agents and {result['servers']} test servers, a message every {result['message_every_seconds']} s each; "
            f"{result['connections_opened']} opened, {result['connections_failed']} failed, {result['messages_received']} echoes; "
            f"{result['steady_samples']} samples over {result['steady_seconds']} s after a {result['warm_up_seconds']} s warm-up: "
            f"RSS {'flat' if result['rss_flat'] else 'NOT flat'} within 2%: agents "
            + ", ".join(rss(entry) for entry in result["agents_rss"])
            + f"; controller {rss(result['controller_rss'])}"
            + (f" (largest reads: {rss(result['controller_rss_largest_read'])})" if "controller_rss_largest_read" in result else "")
            + f"; history {result['history_first_mb']} MB at start, "
            f"{result['history_final_mb']} MB at the end (summary and report included), growing "
            f"{result['history_growth_mb_per_hour']} MB/h while steady ({result['history_intervals']} intervals stored, "
            f"{result['history_bytes_per_interval']} bytes of JSON each)"
        )
    return "\n".join(lines).strip()


def terminate_cleanly():
    """SIGTERM and SIGHUP end the suite as Ctrl-C does: through every `finally`, so servers stop
    and their connection tracking rules go."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (2 s, one round, fewer connections)")
    parser.add_argument("--only", action="append", help="run only these workloads")
    parser.add_argument("--rounds", type=int, help="rounds per rate workload and server, alternating which client goes first (default 3; 1 with --quick)")
    parser.add_argument("--seconds", type=float, help="seconds per rate run (default 4; 2 with --quick)")
    parser.add_argument("--servers", default="upstream,testserver", help="servers of the rate workloads, in order (default upstream,testserver)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--autogroup-nice", type=int, metavar="N",
                        help="run the suite in a session of its own whose scheduler group has nice N (e.g. -10; negative needs root): "
                             "on a machine busy with other work, the clients and servers then get their cores when they wake "
                             "instead of queueing behind other sessions' processes (Linux autogroups share the CPU per session)")
    parser.add_argument("--wsfleet", type=Path, help="the wsfleet binary to measure (default target/release/wsfleet; implies --no-build)")
    parser.add_argument("--scale-connections", type=int,
                        help="connections the scale workload holds at once (default 250000; 10000 with --quick); agents, test servers "
                             "and source addresses are sized from it, and kernel settings it needs are checked and raised (as root)")
    parser.add_argument("--scale-hold", type=int, help="seconds each connection of the scale workload is held (default: connections / 2000, at least 20)")
    parser.add_argument("--soak-minutes", type=float, help="how long the soak runs (default 30; 3 with --quick)")
    parser.add_argument("--soak-connections", type=int, help="connections the soak holds (default 20000; 2000 with --quick)")
    parser.add_argument("--soak-agents", type=int, default=4, help="agent processes of the soak (default 4)")
    parser.add_argument("--soak-message-every", type=float, default=5, help="seconds between one connection's messages (default 5)")
    parser.add_argument("--soak-sample-every", type=float, help="seconds between samples (default 10; 5 with --quick)")
    parser.add_argument("--soak-warm-up", type=float, help="seconds before RSS must be flat (default: a fifth of the run, at least 60)")
    arguments = parser.parse_args()
    terminate_cleanly()
    Untracked.sweep()
    if arguments.autogroup_nice is not None:
        if os.getsid(0) != os.getpid():
            # A new session is a new autogroup: its nice moves only this suite's processes.
            os.execvp("setsid", ["setsid", "--wait", sys.executable, *sys.argv])
        Path("/proc/self/autogroup").write_text(str(arguments.autogroup_nice))
        log(f"autogroup: {Path('/proc/self/autogroup').read_text().strip()}")
    global WSFLEET
    if arguments.wsfleet:
        WSFLEET = arguments.wsfleet.resolve()
        arguments.no_build = True
    if not arguments.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "wsfleet", "-p", "wsfleet-bench"], cwd=ROOT, check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    seconds = arguments.seconds or (2 if arguments.quick else 4)
    seconds = int(seconds) if float(seconds).is_integer() else seconds
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    servers = [name.strip() for name in arguments.servers.split(",") if name.strip()]
    unknown = [name for name in servers if name not in SERVERS]
    if unknown or not servers:
        parser.error(f"--servers: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(SERVERS)}")
    wanted = set(arguments.only or ["connect_rate", "echo", "idle", "controller"])
    if "echo" in wanted:
        wanted |= {"echo_1", "echo_16", "fire"}
    results = {"machine": {"cores": os.cpu_count(), "nofile": hard}, "seconds": seconds, "rounds": rounds,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(), "binary": str(WSFLEET),
               "autogroup_nice": arguments.autogroup_nice, "load_average_at_start": os.getloadavg()}
    if wanted & {*RATE_WORKLOADS, "script_1", "script_16"} and "upstream" in servers:
        UpstreamServer.binary, results["upstream"] = build_upstream_server()
        results["upstream"] = f"{results['upstream']} examples/{UPSTREAM_EXAMPLE}.rs"
    with tempfile.TemporaryDirectory() as directory:
        if "connect_rate" in wanted:
            log("connect rate ...")
            results["connect_rate"] = connect_rate(seconds, rounds, servers)
        if "echo_1" in wanted:
            log("echo, 1 in flight ...")
            results["echo_1"] = echo(seconds, 1, rounds, servers)
        if "echo_16" in wanted:
            log("echo, 16 in flight ...")
            results["echo_16"] = echo(seconds, 16, rounds, servers)
        if "fire" in wanted:
            log("fire-and-count ...")
            results["fire"] = fire(seconds, rounds, servers)
        for in_flight in (1, 16):
            if f"script_{in_flight}" in wanted:
                log(f"echo with a script per message, {in_flight} in flight ...")
                results[f"script_{in_flight}"] = script_cost(seconds, in_flight, rounds, servers)
        if "idle" in wanted:
            log("idle connections ...")
            results["idle"] = idle(directory, [500, 2000] if arguments.quick else [1000, 5000, 15000])
            log("idle connections held by each server ...")
            if "upstream" in servers and UpstreamServer.binary is None:
                UpstreamServer.binary, results["upstream"] = build_upstream_server()
                results["upstream"] = f"{results['upstream']} examples/{UPSTREAM_EXAMPLE}.rs"
            results["idle_servers"] = idle_servers(500 if arguments.quick else 2000, servers)
        if "scale" in wanted:
            log("scale: many connections over several agents and servers ...")
            connections = arguments.scale_connections or (10000 if arguments.quick else 250000)
            plan, changed = scale_plan(connections, hard)
            # Every VU holds its connection for `hold` seconds after it opens: longer than opening
            # all of them takes, so that all are held at once.
            hold = arguments.scale_hold or max(10 if arguments.quick else 20, connections // 2000)
            results["scale"] = scale(directory, connections, plan["agents"], plan["servers"], plan["sources"], hold)
            results["scale"].update({"hold_seconds": hold, "sysctl_changed": changed, "load_average_at_start": results["load_average_at_start"]})
        if "controller" in wanted:
            log("controller with simulated agents ...")
            results["controller"] = controller(directory, 5 if arguments.quick else 10, 100 if arguments.quick else 1000)
        if "soak" in wanted:
            minutes = arguments.soak_minutes or (3 if arguments.quick else 30)
            connections = arguments.soak_connections or (2000 if arguments.quick else 20000)
            sample_every = arguments.soak_sample_every or (5 if arguments.quick else 10)
            warm_up = arguments.soak_warm_up if arguments.soak_warm_up is not None else max(60, minutes * 60 / 5)
            log(f"soak: {connections} connections for {minutes} min, sampled every {sample_every} s ...")
            # Servers: at most ~10,000 connections each, under a 20,000 open-file limit.
            servers = max(1, -(-connections // 10000))
            results["soak"] = soak(directory, connections, minutes, arguments.soak_agents, servers, "127.0.0.2-127.0.0.9",
                                   arguments.soak_message_every, sample_every, warm_up)
            results["soak"]["binary"] = str(WSFLEET)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    # A soak or a scale run alone is its own series: it does not replace the latest suite's results.
    prefix = "soak-" if wanted == {"soak"} else "scale-" if wanted == {"scale"} else ""
    (out_dir / f"{stamp}{'-' + prefix.rstrip('-') if prefix else ''}.json").write_text(json.dumps(results, indent=2))
    (out_dir / f"{prefix}latest.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (out_dir / f"{prefix}latest.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
