#!/usr/bin/env python3
"""Side-by-side throughput and latency, one machine, one run.

Starts each target in turn on loopback (the raw relay, hpfriends on one node,
hpfriends on three nodes with publisher and subscribers on different nodes,
the hpfeeds 3.x broker, nats-server), runs every workload against it with
`hpfriends bench --json`, stops it, and goes on to the next; three rounds, so
the targets alternate. Prints Markdown tables of the medians and the ratios.

Run it through benches/compare.sh, which builds and installs what it needs.
"""

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TOKEN = "compare-operator-token-0123456789abcdef"
SECRET = "compare-cluster-secret-0123456789abcdef"

# (name, hpfriends bench arguments)
WORKLOADS = [
    ("1→1 256 B W=4096", ["-p", "1", "-s", "1", "--window", "4096"]),
    ("1→20 256 B W=4096", ["-p", "1", "-s", "20", "--window", "4096"]),
    ("20→1 256 B W=4096", ["-p", "20", "-s", "1", "--window", "4096"]),
    # Payloads nothing can compress (the archive compresses what it keeps).
    ("1→1 256 B random W=4096", ["-p", "1", "-s", "1", "--window", "4096", "--random-payload"]),
    ("1→20 256 B random W=4096", ["-p", "1", "-s", "20", "--window", "4096", "--random-payload"]),
    ("1→1 256 B open", ["-p", "1", "-s", "1"]),
    ("1→20 256 B open", ["-p", "1", "-s", "20"]),
    ("20→1 256 B open", ["-p", "20", "-s", "1"]),
    ("1→1 256 B 10,000/s", ["-p", "1", "-s", "1", "--rate", "10000"]),
    # 64 messages of 64 KiB in flight (4 MiB), inside every target's per-client buffer.
    ("1→1 64 KiB W=64", ["-p", "1", "-s", "1", "--size", "65536", "--window", "64"]),
    # Cowrie-like JSON on `events`, read by two users (10 subscribers each): on
    # hpfriends-1-filtered their shares carry a `where` and a redaction.
    ("1→20 512 B JSON W=4096", ["-p", "1", "-s", "20", "--window", "4096", "--size", "512", "--json-payload",
                                "--channel", "events", "--sub-keys", "2"]),
]

GRAPH = {
    "users": ["sensors", "analyst", "analyst-0", "analyst-1"],
    "shares": [
        {"from": "sensors", "to": "analyst", "channel": "bench", "kind": "shares"},
        {"from": "sensors", "to": "analyst-0", "channel": "events", "kind": "shares"},
        {"from": "sensors", "to": "analyst-1", "channel": "events", "kind": "shares"},
    ],
    "keys": [
        {"ident": "bench-pub", "secret": "bench-pub", "owner": "sensors", "publish": ["bench", "events"]},
        {"ident": "bench-sub", "secret": "bench-sub", "owner": "analyst", "subscribe": ["bench"]},
        {"ident": "bench-sub-0", "secret": "bench-sub-0", "owner": "analyst-0", "subscribe": ["events"]},
        {"ident": "bench-sub-1", "secret": "bench-sub-1", "owner": "analyst-1", "subscribe": ["events"]},
    ],
}

# hpfriends-1-filtered: the same, with two distinct filters on the `events`
# shares (each lets every message of the JSON workload through).
FILTERS = [
    {"where": 'payload.eventid == "cowrie.login.success" && !ip(payload.src_ip).in_cidr("192.0.2.0/24")'},
    {"redact": ["/dst_ip", "/password"]},
]

HPFEEDS3_AUTH = {
    "bench-pub": {"owner": "sensors", "secret": "bench-pub", "pubchans": ["bench"], "subchans": []},
    "bench-sub": {"owner": "analyst", "secret": "bench-sub", "pubchans": [], "subchans": ["bench"]},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"error: {what} did not listen on port {port} within {timeout} s")


def wait_ready(http_port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"error: hpfriends on HTTP port {http_port} was not ready within {timeout} s")


class Target:
    """A server (or cluster) started for one round, stopped after it."""

    def __init__(self, name, binary, venv, workdir, config=None):
        self.name, self.binary, self.venv, self.workdir = name, binary, venv, workdir
        self.config = config  # TOML text for every hpfriends node
        self.procs = []

    def spawn(self, args, log):
        self.procs.append(subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT))

    def start(self):
        d = tempfile.mkdtemp(dir=self.workdir, prefix=self.name + "-")
        if self.name == "relay":
            p = free_port()
            self.spawn([self.binary, "bench", "relay", "--listen", f"127.0.0.1:{p}"], f"{d}/log")
            wait_port(p, "the relay")
            self.pub, self.sub = [p], [p]
        elif self.name.startswith("hpfriends"):
            nodes = 3 if self.name.startswith("hpfriends-3") else 1
            ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
            for i, (hp, http, cl) in enumerate(ports):
                args = [self.binary, "serve", "--node-id", str(i + 1), "--data-dir", f"{d}/node{i + 1}",
                        "--hpfeeds-addr", f"127.0.0.1:{hp}", "--http-addr", f"127.0.0.1:{http}",
                        "--cluster-addr", f"127.0.0.1:{cl}", "--operator-token", TOKEN,
                        "--cluster-secret", SECRET]
                if i > 0:
                    args += ["--join", f"127.0.0.1:{ports[0][2]}"]
                if self.config:
                    with open(f"{d}/node{i + 1}.toml", "w") as f:
                        f.write(self.config)
                    args += ["--config", f"{d}/node{i + 1}.toml"]
                self.spawn(args, f"{d}/node{i + 1}.log")
                wait_ready(http)
            for _, http, _ in ports:
                wait_ready(http)
            graph = f"{d}/graph.json"
            declared = json.loads(json.dumps(GRAPH))
            if self.name.endswith("-filtered"):
                for share, f in zip(declared["shares"][1:], FILTERS):
                    share["filter"] = f
            with open(graph, "w") as f:
                json.dump(declared, f)
            ctl = lambda http, *args: subprocess.run(
                [self.binary, "ctl", "--server", f"http://127.0.0.1:{http}", "--token", TOKEN, *args],
                check=True, stdout=subprocess.DEVNULL)
            ctl(ports[0][1], "apply", graph)
            for _, http, _ in ports:  # a linearizable read: this node has applied the graph
                ctl(http, "--consistent", "user", "list")
            self.http = [p[1] for p in ports]
            self.pub = [ports[0][0]]
            self.sub = [p[0] for p in ports[1:]] or [ports[0][0]]
        elif self.name == "hpfeeds3":
            p = free_port()
            auth = f"{d}/auth.json"
            with open(auth, "w") as f:
                json.dump(HPFEEDS3_AUTH, f)
            self.spawn([f"{self.venv}/bin/hpfeeds-broker", "--bind", f"127.0.0.1:{p}", "--auth", auth], f"{d}/log")
            wait_port(p, "the hpfeeds 3.x broker")
            self.pub, self.sub = [p], [p]
        elif self.name == "hpfeeds-rs":
            # Threatwise/hpfeeds-rs's broker, built by hand (--hpfeeds-rs-binary), the same keys.
            p = free_port()
            users = f"{d}/users.json"
            with open(users, "w") as f:
                json.dump({"users": [{"ident": ident, "secret": k["secret"], "pub_channels": k["pubchans"],
                                      "sub_channels": k["subchans"]} for ident, k in HPFEEDS3_AUTH.items()]}, f)
            self.spawn([self.binary, "--host", "127.0.0.1", "--port", str(p), "--metrics-port", str(free_port()),
                        "--config", users], f"{d}/log")
            wait_port(p, "hpfeeds-rs")
            self.pub, self.sub = [p], [p]
        elif self.name == "nats":
            p = free_port()
            self.spawn(["nats-server", "-a", "127.0.0.1", "-p", str(p)], f"{d}/log")
            wait_port(p, "nats-server")
            self.pub, self.sub = [p], [p]

    def rss_mib(self):
        """Resident memory of the server processes now, MiB (largest process)."""
        best = 0
        for p in self.procs:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            best = max(best, int(line.split()[1]) / 1024)
            except OSError:
                pass
        return best

    def cpu_seconds(self):
        """User + system CPU time of the server processes so far, one entry each."""
        tick = os.sysconf("SC_CLK_TCK")
        times = []
        for p in self.procs:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            times.append((int(fields[11]) + int(fields[12])) / tick)
        return times

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def run_bench(binary, target, args, duration):
    addrs = lambda ports: ",".join(f"127.0.0.1:{p}" for p in ports)
    cmd = [binary, "bench", "--json", "--duration", str(duration), "--addr", addrs(target.pub),
           "--sub-addr", addrs(target.sub), "--protocol", "nats" if target.name == "nats" else "hpfeeds"] + args
    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            peak[0] = max(peak[0], target.rss_mib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    servers_before = target.cpu_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers_after = target.cpu_seconds()
    done.set()
    sampler.join()
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    report = json.loads(out.stdout)
    report["server_rss_mib"] = peak[0]
    # CPU spent per delivered message (whole run, settle included): what each
    # side costs, independent of how the two shared cores were scheduled.
    delivered = report["delivered_per_s"] * report["seconds"]
    if delivered > 0:
        per_msg = lambda seconds: seconds / delivered * 1e6
        report["server_cpu_us_per_msg"] = [per_msg(a - b) for a, b in zip(servers_after, servers_before)]
        bench = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
        report["bench_cpu_us_per_msg"] = per_msg(bench)
    return report


def fmt_rate(v):
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--targets", default="relay,hpfriends-1,hpfriends-3,hpfeeds3,nats")
    ap.add_argument("--workloads", default="", help="substring filter on workload names")
    ap.add_argument("--out", default="compare-results.jsonl")
    ap.add_argument("--base-binary", help="the build that serves the hpfriends-1-base target")
    ap.add_argument("--hpfeeds-rs-binary", help="Threatwise/hpfeeds-rs's hpfeeds-server, for the hpfeeds-rs target")
    a = ap.parse_args()
    targets = a.targets.split(",")
    workloads = [w for w in WORKLOADS if a.workloads in w[0]]
    workdir = tempfile.mkdtemp(prefix="hpfriends-compare-")
    results = {}  # (workload, target) -> [report]
    with open(a.out, "w") as out:
        for rnd in range(1, a.rounds + 1):
            for name in targets:
                # hpfriends-1-noarchive: one node with `archive = false`, beside
                # hpfriends-1 (the archive on, as by default) for its cost.
                config = "archive = false\n" if name.endswith("-noarchive") else None
                # hpfriends-1-base: hpfriends-1 served by another build, to
                # measure one change beside the build before it.
                binary = a.base_binary if name.endswith("-base") else a.binary
                binary = a.hpfeeds_rs_binary if name == "hpfeeds-rs" else binary
                t = Target(name, binary, a.venv, workdir, config)
                t.start()
                try:
                    for wname, wargs in workloads:
                        r = run_bench(a.binary, t, wargs, a.duration)
                        r.update(round=rnd, target=name, workload=wname)
                        out.write(json.dumps(r) + "\n")
                        out.flush()
                        results.setdefault((wname, name), []).append(r)
                        brief = r.get("error") or (
                            f"{fmt_rate(r['delivered_per_s'])} delivered/s, lost {r['lost']}, "
                            f"p99 {r['latency_us']['p99']:.0f} µs, rss {r['server_rss_mib']:.0f} MiB")
                        print(f"round {rnd} {name:12} {wname:20} {brief}", file=sys.stderr)
                finally:
                    t.stop()
    print_tables(results, targets, workloads)


def median_of(reports, key):
    vals = [key(r) for r in reports if "error" not in r]
    return statistics.median(vals) if vals else None


def print_ratio(results, workloads, this, other, title, heads):
    """One target ÷ another, delivered/s and server CPU µs per delivered message."""
    print(f"\n### {title}, delivered/s and server CPU µs per delivered message\n")
    print(f"| workload | {heads[0]} | {heads[1]} | ÷ | CPU µs {heads[0]} / {heads[1]} |")
    print("|---|---|---|---|---|")
    cpu = lambda r: sum(r["server_cpu_us_per_msg"])
    rate = lambda r: r["delivered_per_s"]
    for wname, _ in workloads:
        a, b = results.get((wname, this), []), results.get((wname, other), [])
        ra, rb = median_of(a, rate), median_of(b, rate)
        if ra and rb:
            print(f"| {wname} | {fmt_rate(ra)} | {fmt_rate(rb)} | {ra / rb:.2f}× | "
                  f"{median_of(a, cpu):.2f} / {median_of(b, cpu):.2f} |")


def print_tables(results, targets, workloads):
    print("\n### Throughput: delivered messages/s (all subscribers), median of rounds\n")
    others = [t for t in targets if not t.startswith("hpfriends")]
    print("| " + " | ".join(["workload"] + targets + [f"hpfriends-1 / {o}" for o in others]) + " |")
    print("|---" * (len(targets) + len(others) + 1) + "|")
    for wname, _ in workloads:
        if "10,000/s" in wname:
            continue
        med = {t: median_of(results.get((wname, t), []), lambda r: r["delivered_per_s"]) for t in targets}
        cells = [fmt_rate(med[t]) if med[t] else "error" for t in targets]
        ratio = lambda other: f"{med['hpfriends-1'] / med[other]:.2f}×" if med.get("hpfriends-1") and med.get(other) else "—"
        print("| " + " | ".join([wname] + cells + [ratio(o) for o in others]) + " |")
    for this, other, title, heads in [
        ("hpfriends-1", "hpfriends-1-noarchive", "The archive's cost: hpfriends-1 (archive on) ÷ hpfriends-1-noarchive",
         ("archive on", "archive off")),
        ("hpfriends-1", "hpfriends-1-base", "A change's effect: hpfriends-1 ÷ hpfriends-1-base (--base-binary)",
         ("this build", "base")),
        ("hpfriends-1-filtered", "hpfriends-1",
         "Filters' cost: hpfriends-1-filtered (two filtered shares on `events`) ÷ hpfriends-1 (none)",
         ("filtered", "unfiltered")),
    ]:
        if this in targets and other in targets:
            print_ratio(results, workloads, this, other, title, heads)
    print("\n### Loss and closes (sum over rounds): lost messages / subscribers closed by the server\n")
    print("| workload | " + " | ".join(targets) + " |")
    print("|---" * (len(targets) + 1) + "|")
    for wname, _ in workloads:
        cells = []
        for t in targets:
            rs = [r for r in results.get((wname, t), []) if "error" not in r]
            closed = sum(sum(1 for s in r["per_subscriber"] if s["closed"]) for r in rs)
            cells.append(f"{sum(r['lost'] for r in rs)} / {closed}")
        print(f"| {wname} | " + " | ".join(cells) + " |")
    print("\n### Latency at 10,000 msg/s, 1→1, 256 B: p50 / p99 / p99.9 µs, median of rounds\n")
    print("| " + " | ".join(targets) + " |")
    print("|---" * len(targets) + "|")
    cells = []
    for t in targets:
        rs = results.get(("1→1 256 B 10,000/s", t), [])
        q = [median_of(rs, lambda r, k=k: r["latency_us"][k]) for k in ("p50", "p99", "p999")]
        cells.append(" / ".join(f"{v:.0f}" for v in q) if None not in q else ("error" if rs else "not run"))
    print("| " + " | ".join(cells) + " |")
    print("\n### CPU per delivered message, µs: server processes (node 1 + node 2 + node 3) / load generator, median of rounds\n")
    print("| workload | " + " | ".join(targets) + " |")
    print("|---" * (len(targets) + 1) + "|")
    for wname, _ in workloads:
        if "W=4096" not in wname:
            continue
        cells = []
        for t in targets:
            rs = [r for r in results.get((wname, t), []) if "server_cpu_us_per_msg" in r]
            if not rs:
                cells.append("—")
                continue
            nodes = [statistics.median(r["server_cpu_us_per_msg"][i] for r in rs) for i in range(len(rs[0]["server_cpu_us_per_msg"]))]
            bench = statistics.median(r["bench_cpu_us_per_msg"] for r in rs)
            cells.append(" + ".join(f"{n:.2f}" for n in nodes) + f" / {bench:.2f}")
        print(f"| {wname} | " + " | ".join(cells) + " |")
    print("\n### Server memory: peak RSS during 1→20 open loop, MiB (largest process), max of rounds\n")
    print("| " + " | ".join(targets) + " |")
    print("|---" * len(targets) + "|")
    rss = [[r["server_rss_mib"] for r in results.get(("1→20 256 B open", t), []) if "error" not in r] for t in targets]
    print("| " + " | ".join(f"{max(v):.0f}" if v else "not run" for v in rss) + " |")


if __name__ == "__main__":
    main()
