#!/usr/bin/env python3
"""Does a Live page slow the publish path? Lossless capacity 1→1 (256 B,
W=4096) of one hpfriends node, with and without a browser's Live stream
subscribed on another channel, in alternating rounds; prints every round and
the medians with their spread (docs/BENCHMARKS.md).

  python3 benches/live.py [--binary PATH] [--rounds 5] [--duration 3]

The "browser" is the Live page's own request (GET /live/events, a real
session signed in through the web forms), read as it arrives in a thread.
"""

import argparse
import http.cookiejar
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from compare import TOKEN, free_port, wait_ready  # noqa: E402

GRAPH = {
    "users": ["sensors", "analyst", "watcher"],
    "shares": [
        {"from": "sensors", "to": "analyst", "channel": "bench", "kind": "shares"},
        {"from": "sensors", "to": "watcher", "channel": "other", "kind": "shares"},
    ],
    "keys": [
        {"ident": "bench-pub", "secret": "bench-pub", "owner": "sensors", "publish": ["bench", "other"]},
        {"ident": "bench-sub", "secret": "bench-sub", "owner": "analyst", "subscribe": ["bench"]},
    ],
}
PASSWORD = "a long bench password"


def signed_in(base):
    """The watcher's session cookie, through the invitation and sign-in forms."""
    req = urllib.request.Request(f"{base}/api/v1/users/watcher/invite", data=b"{}", method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    link = json.load(urllib.request.urlopen(req))["link"]
    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def form(url, fields):
        page = web.open(url).read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        web.open(url, urllib.parse.urlencode({"csrf": csrf, **fields}).encode()).read()

    form(link, {"name": "watcher", "password": PASSWORD, "confirm": PASSWORD})
    form(f"{base}/sign-in", {"name": "watcher", "password": PASSWORD})
    return next(c.value for c in jar if c.name == "hpfriends_session")


def live_stream(http_port, cookie, channel):
    """Opens the Live page's event stream and reads it in a thread; returns the socket."""
    s = socket.create_connection(("127.0.0.1", http_port))
    s.sendall(f"GET /live/events?channels={channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              f"Cookie: hpfriends_session={cookie}\r\n\r\n".encode())
    head = s.recv(4096)
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"error: the live stream was refused: {head[:200]!r}")

    def read():
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
    threading.Thread(target=read, daemon=True).start()
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/hpfriends-target"),
                                                     "release", "hpfriends"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hpfriends-live-bench-")
    hp, http = free_port(), free_port()
    node = subprocess.Popen([args.binary, "serve", "--data-dir", f"{work}/node", "--hpfeeds-addr", f"127.0.0.1:{hp}",
                             "--http-addr", f"127.0.0.1:{http}", "--operator-token", TOKEN],
                            stdout=open(f"{work}/node.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_ready(http)
        with open(f"{work}/graph.json", "w") as f:
            json.dump(GRAPH, f)
        subprocess.run([args.binary, "ctl", "--server", f"http://127.0.0.1:{http}", "--token", TOKEN, "apply",
                        f"{work}/graph.json"], check=True, stdout=subprocess.DEVNULL)
        cookie = signed_in(f"http://127.0.0.1:{http}")
        results = {"without": [], "with a Live page on another channel": []}
        for r in range(args.rounds):
            for name in results:
                stream = live_stream(http, cookie, "other") if name != "without" else None
                out = subprocess.run([args.binary, "bench", "--json", "--addr", f"127.0.0.1:{hp}", "-p", "1", "-s", "1",
                                      "--window", "4096", "--duration", str(args.duration)],
                                     check=True, capture_output=True, text=True)
                if stream:
                    stream.close()
                report = json.loads(out.stdout)
                results[name].append(report["delivered_per_s"])
                print(f"round {r + 1}, {name}: {report['delivered_per_s'] / 1e6:.3f} M msg/s, lost {report['lost']}",
                      flush=True)
        print(f"\nlossless capacity 1→1, 256 B, W=4096, {args.rounds} rounds of {args.duration} s:")
        for name, rates in results.items():
            print(f"  {name}: median {statistics.median(rates) / 1e6:.3f} M msg/s "
                  f"(spread {min(rates) / 1e6:.3f}–{max(rates) / 1e6:.3f})")
        ratio = statistics.median(results["with a Live page on another channel"]) / statistics.median(results["without"])
        print(f"  with / without: {ratio:.3f}")
    finally:
        node.terminate()
        node.wait()


if __name__ == "__main__":
    main()
