#!/usr/bin/env python3
"""Where a delivered message's CPU goes, per workload (docs/BENCHMARKS.md,
"Where the publish path's CPU goes").

For each workload: a fresh one-node hpfriends (as `benches/compare.py` starts
it), `hpfriends bench` driving it, and `perf record` of the broker for a few
seconds of the steady state. Writes a flame graph per workload to docs/plots/
(inferno) and prints the share of the broker's samples in each part of the
path, matched by function names in the stacks.

Run it through benches/profile.sh, which builds and installs what it needs.
"""

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from compare import Target, WORKLOADS, fmt_rate, run_bench  # noqa: E402

PROFILED = ["1→1 256 B W=4096", "1→20 256 B W=4096", "20→1 256 B W=4096"]

# Kernel time is named by the system call it serves (the frame after
# do_syscall_64); loopback delivery runs inside the sender's write.
SYSCALLS = [
    ("kernel: socket writes (and loopback delivery)", ["writev", "ksys_write", "sendmsg", "sendto"]),
    ("kernel: socket reads", ["read", "recvfrom", "recvmsg"]),
    ("kernel: thread wake-ups and sleeps (futex)", ["futex"]),
    ("kernel: waiting for sockets (epoll)", ["epoll"]),
]
# User space: the innermost frame of the stack that matches a part decides;
# these frames say nothing of the caller's purpose and are looked through.
TRANSPARENT = ["__mem", "core::", "<core::", "alloc::", "<alloc::", "std::", "arc_swap", "<&", "<T as"]
PARTS = [
    ("archive (offers, chunks, RocksDB)", ["archive::", "rocksdb", "lz4_flex", "crc32c"]),
    ("metrics (publish-size histogram, counters)", ["metrics", "quanta", "telemetry"]),
    ("per-key activity", ["activity::", "::published"]),
    ("decode (framing, PUBLISH parsing)", ["protocol::", "FramedImpl", "split_to", "from_utf8"]),
    ("key and permission checks", ["same_key", "KeyEntry", "may_publish", "key_allows"]),
    ("routing (index lookup, peers)", ["SharingIndex", "routing::", "imbl::", "Peers::forward", "cluster::"]),
    ("queues and writer", ["outbound::", "mpsc", "writer::", "shared_v", "bytes::"]),
    ("allocation", ["malloc", "calloc", "realloc", "_int_free", "cfree", "unlink_chunk", "__rust_alloc",
                    "__rust_dealloc"]),
    ("wake-ups and the runtime (tokio)", ["Waker", "wake", "tokio::", "crossbeam_epoch", "park"]),
]


def part_of(frames):
    # The archive's threads (its writer, RocksDB's flushes) with their system calls.
    if frames[0] == "archive" or any(n in f for f in frames for n in PARTS[0][1]):
        return PARTS[0][0]
    if "do_syscall_64" in frames:
        call = frames[frames.index("do_syscall_64") + 1] if frames[-1] != "do_syscall_64" else ""
        return next((name for name, calls in SYSCALLS if any(c in call for c in calls)), "kernel: other system calls")
    if any(f.startswith(("asm_sysvec", "asm_common_interrupt", "handle_softirqs", "irqentry")) for f in frames):
        return "kernel: interrupts"
    for frame in reversed(frames):
        if any(frame.startswith(t) for t in TRANSPARENT):
            continue
        for name, needles in PARTS:
            if any(n in frame for n in needles):
                return name
    return "other"


def profile(binary, wname, wargs, seconds, out_dir, workdir):
    t = Target("hpfriends-1", binary, None, workdir)
    t.start()
    pid = t.procs[0].pid
    data = os.path.join(workdir, "perf.data")
    result = {}
    try:
        bench = threading.Thread(target=lambda: result.update(run_bench(binary, t, wargs, seconds + 2)))
        bench.start()
        time.sleep(1.0)  # past connect and the first burst
        subprocess.run(["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(pid),
                        "-o", data, "--", "sleep", str(seconds)], check=True, stdout=subprocess.DEVNULL)
        bench.join()
    finally:
        t.stop()
    script = subprocess.run(["perf", "script", "-i", data], check=True, capture_output=True, text=True,
                            errors="replace").stdout
    collapsed = subprocess.run(["inferno-collapse-perf"], input=script, check=True, capture_output=True,
                               text=True).stdout
    slug = wname.split(" ")[0].replace("→", "-to-")
    with open(os.path.join(workdir, f"{slug}.folded"), "w") as f:
        f.write(collapsed)
    svg = os.path.join(out_dir, f"flame-{slug}.svg")
    with open(svg, "w") as f:
        subprocess.run(["inferno-flamegraph", "--minwidth", "0.5", "--title", f"hpfriends, {wname}: {fmt_rate(result.get('delivered_per_s', 0))} delivered/s"],
                       input=collapsed, check=True, stdout=f, text=True)
    parts = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        parts[part_of(stack.split(";"))] += int(count)
    return result, parts, svg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out-dir", default="docs/plots")
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="hpfriends-profile-")
    print(f"perf data and folded stacks in {workdir}", file=sys.stderr)
    rows = []
    for wname, wargs in WORKLOADS:
        if wname not in PROFILED:
            continue
        result, parts, svg = profile(a.binary, wname, wargs, a.seconds, a.out_dir, workdir)
        rows.append((wname, result, parts))
        print(f"{wname}: {fmt_rate(result.get('delivered_per_s', 0))} delivered/s, "
              f"{result.get('server_cpu_us_per_msg', [0])[0]:.2f} µs server CPU per delivered message; {svg}",
              file=sys.stderr)
    names = [p for p, _ in SYSCALLS] + ["kernel: other system calls", "kernel: interrupts"]
    names += [p for p, _ in PARTS] + ["other"]
    print("| part of the broker's CPU | " + " | ".join(w for w, _, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for p in names:
        cells = []
        for _, result, parts in rows:
            total = sum(parts.values()) or 1
            share = parts[p] / total
            per_msg = share * result.get("server_cpu_us_per_msg", [0])[0]
            cells.append(f"{share * 100:.0f} % ({per_msg:.3f} µs)")
        print(f"| {p} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
