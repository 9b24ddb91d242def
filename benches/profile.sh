#!/usr/bin/env bash
# Profiles the publish path under the side-by-side workloads (docs/BENCHMARKS.md,
# "Where the publish path's CPU goes"): perf record of one node per workload,
# flame graphs (inferno) to docs/plots/flame-*.svg, and a table of where the
# broker's CPU goes.
#   benches/profile.sh [--seconds 4]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || {
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
}
command -v inferno-flamegraph >/dev/null || cargo install --locked --quiet inferno
# The release binary keeps its symbols (only debug info is stripped): enough
# for perf to name every function; DWARF unwinding uses .eh_frame.
cargo build --quiet --release -p hpfriends --bin hpfriends
target="${CARGO_TARGET_DIR:-/var/tmp/hpfriends-target}"
exec python3 benches/profile.py --binary "$target/release/hpfriends" "$@"
