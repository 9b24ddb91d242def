#!/usr/bin/env python3
"""A sensor fleet against one hpfriends node or a three-node cluster, at
several fleet sizes: a fresh node (or cluster) for each size, `hpfriends
bench fleet --json` against it, every report written to one JSON file that
benches/plot.py draws (docs/BENCHMARKS.md).

  benches/fleet.sh [--nodes 1|3] [--sizes 1000,5000,10000] [--duration 30] [--rate 0.1]

On three nodes the sensors connect round-robin to the nodes, one subscriber
per node reads everything, and the sensors are spread over client processes
of at most 15,000 connections each (a process may open 20,000 files here).

Run it through benches/fleet.sh, which builds the binary and makes the plots.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from compare import TOKEN, Target  # noqa: E402

# The node's own limit must hold the largest fleet (the machine's fd limit is the bound).
NODE_CONFIG = "max_connections = 18900\n"


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    ap.add_argument("--sizes", default=None,
                    help="sensor counts (default 1000,…,18000 on one node, 30000,40000,50000 on three)")
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--rate", type=float, default=0.1, help="messages per second per sensor")
    ap.add_argument("--out", default="benches/results/fleet.json")
    args = ap.parse_args()
    sizes = args.sizes or ("1000,2500,5000,10000,15000,18000" if args.nodes == 1 else "30000,40000,50000")
    sizes = [int(n) for n in sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="fleet-") as workdir:
        for n in sizes:
            node = Target(f"hpfriends-{args.nodes}", args.binary, None, workdir, config=NODE_CONFIG)
            node.start()
            try:
                hpfeeds = ",".join(f"127.0.0.1:{p}" for p in (node.pub + node.sub)[:args.nodes])
                command = [args.binary, "bench", "fleet", "--json", "--addr", hpfeeds,
                           "--api", ",".join(f"http://127.0.0.1:{p}" for p in node.http), "--token", TOKEN,
                           "--sensors", str(n), "--users", str(max(n // 10, 1)), "--rate", str(args.rate),
                           "--duration", str(args.duration), "--subscribers", str(args.nodes),
                           "--processes", str(-(-n // 15000)),
                           "--server-pid", ",".join(str(p.pid) for p in node.procs)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"error: bench fleet with {n} sensors failed:\n{done.stderr}")
                report = json.loads(done.stdout)
            finally:
                node.stop()
            runs.append(report)
            print(f"{n:>6} sensors: logged in {report['connect_seconds']:.2f} s, "
                  f"{report['delivered_per_s']:.0f} delivered/s, lost {report['lost']}, "
                  f"p50/p99/p99.9 {report['latency_p50_ms']:.2f}/{report['latency_p99_ms']:.2f}/"
                  f"{report['latency_p999_ms']:.2f} ms, "
                  f"RSS {report['server_rss_per_connection'] / 1024:.1f} KiB per connection, "
                  f"CPU {report['server_cpu_per_message_us']:.1f} µs per message", flush=True)
            for i, usage in enumerate(report["nodes"] if args.nodes > 1 else []):
                print(f"        node {i + 1}: {usage['connections']} connections, "
                      f"RSS {usage['rss_per_connection'] / 1024:.1f} KiB per connection, "
                      f"CPU {usage['cpu_per_message_us']:.1f} µs per delivered message", flush=True)
    result = {
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["benches/fleet.sh"] + sys.argv[1:]),
        "nodes": args.nodes,
        "rate": args.rate,
        "duration": args.duration,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
