#!/usr/bin/env bash
# A sensor fleet against one node or three at several sizes, and the plot
# of the figures (docs/BENCHMARKS.md):
#   benches/fleet.sh [--nodes 1|3] [--sizes 1000,2500,5000,10000,15000,18000] [--duration 30] [--rate 0.1]
# Builds the release binary, puts matplotlib (PyPI) in a venv, runs
# benches/fleet.py (results in benches/results/fleet.json, or
# fleet-3-nodes.json), then draws docs/plots/fleet.png (fleet-3-nodes.png)
# with benches/plot.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HPFRIENDS_PLOT_VENV:-/var/tmp/hpfriends-plot-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'matplotlib==3.9.*'
fi
cargo build --quiet --release -p hpfriends --bin hpfriends
target="${CARGO_TARGET_DIR:-/var/tmp/hpfriends-target}"
name=fleet
previous=
for arg in "$@"; do
  if [ "$previous" = --nodes ] && [ "$arg" = 3 ]; then name=fleet-3-nodes; fi
  previous=$arg
done
python3 benches/fleet.py --binary "$target/release/hpfriends" --out "benches/results/$name.json" "$@"
"$venv/bin/python" benches/plot.py "benches/results/$name.json" "docs/plots/$name.png"
