#!/usr/bin/env bash
# Side-by-side benchmark of hpfriends against the raw relay, the hpfeeds 3.x
# broker and nats-server, on this machine, in one run (docs/BENCHMARKS.md).
#   benches/compare.sh [--rounds 3] [--duration 3] [--targets relay,nats] [--workloads "W=4096"]
# Installs what it needs (nats-server from Debian, hpfeeds[broker]==3.1.0 from
# PyPI into the project's venv), builds the release binary, then runs
# benches/compare.py; raw results go to compare-results.jsonl. Two targets need
# a binary given by hand: hpfriends-1-base (--base-binary: another build of
# hpfriends, to measure a change) and hpfeeds-rs (--hpfeeds-rs-binary: the
# hpfeeds-server of Threatwise/hpfeeds-rs, built from its repository).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nats-server >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq --no-install-recommends nats-server >/dev/null
fi
scripts/hpfeeds-venv >/dev/null
venv="${HPFRIENDS_VENV:-/var/tmp/hpfriends-venv}"
# The client's package installs the hpfeeds-broker script too, without the
# broker's dependencies: check that the broker can actually be imported.
"$venv/bin/python" -c 'import hpfeeds.scripts.broker' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'hpfeeds[broker]==3.1.0'
cargo build --quiet --release -p hpfriends --bin hpfriends
target="${CARGO_TARGET_DIR:-/var/tmp/hpfriends-target}"
exec python3 benches/compare.py --binary "$target/release/hpfriends" --venv "$venv" "$@"
