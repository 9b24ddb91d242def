#!/usr/bin/env python3
"""Draws benches/fleet.py's results: broker memory per connection, CPU per
delivered message (per node, for a cluster), latency and the fleet's login
time against the number of sensors, one PNG (docs/BENCHMARKS.md).

  python benches/plot.py benches/results/fleet.json docs/plots/fleet.png

Needs matplotlib (benches/fleet.sh puts it in a venv).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        result = json.load(f)
    runs = sorted(result["runs"], key=lambda r: r["sensors"])
    n = [r["sensors"] for r in runs]
    nodes = result.get("nodes", 1)
    if nodes == 1:
        rss_title = "broker RSS per connection (KiB)"
        rss = [[r["server_rss_per_connection"] / 1024 for r in runs]]
        cpu = [[r["server_cpu_per_message_us"] for r in runs]]
        per_node = [None]
    else:
        # Each node's own figures. Its RSS whole: the growth per connection is
        # blurred there by memory the graph's replication freed and the
        # connections reused (docs/BENCHMARKS.md).
        rss_title = "broker RSS with the fleet idle (MiB)"
        rss = [[r["nodes"][i]["rss_idle"] / 1048576 for r in runs] for i in range(nodes)]
        cpu = [[r["nodes"][i]["cpu_per_message_us"] for r in runs] for i in range(nodes)]
        per_node = [f"node {i + 1}" for i in range(nodes)]
    panels = [
        (rss_title, rss, per_node),
        ("broker CPU per delivered message (µs)", cpu, per_node),
        ("delivery latency (ms)", [[r[f"latency_{q}_ms"] for r in runs] for q in ("p50", "p99", "p999")],
         ["p50", "p99", "p99.9"]),
        ("whole fleet connected and logged in (s)", [[r["connect_seconds"] for r in runs]], [None]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, series, labels) in zip(axes.flat, panels):
        for values, label in zip(series, labels):
            ax.plot(n, values, marker="o", label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("sensors (connections)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if labels[0]:
            ax.legend()
    where = "one node" if nodes == 1 else f"{nodes} nodes, {nodes} subscribers"
    fig.suptitle(f"hpfriends bench fleet, {where}: {result['rate']} msg/s per sensor, 512 B, "
                 f"{result['duration']:.0f} s\n{result['machine']}, {result['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
