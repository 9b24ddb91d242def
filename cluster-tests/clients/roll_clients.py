"""Load for the rolling-upgrade test, made of real hpfeeds 3.1.0 clients.

One publisher and N subscribers, each an `hpfeeds.asyncio.ClientSession`,
which reconnects by itself as deployed hpfeeds clients do. The publisher sends
a sequence number at a fixed rate whenever it is connected. Prints `ready`
once every subscriber receives; on SIGTERM stops publishing, waits for
stragglers and prints one JSON line with what each client saw.
"""

import argparse
import asyncio
import json
import signal
import time

from hpfeeds.asyncio import ClientSession


class Gaps:
    """Longest time between two events, and how often the connection changed."""

    def __init__(self):
        self.last = None
        self.longest = 0.0
        self.protocol = None
        self.connections = 0

    def event(self, now):
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
        self.last = now

    def saw_protocol(self, protocol):
        if protocol is not None and protocol is not self.protocol:
            self.connections += 1
        self.protocol = protocol


async def publish(session, channel, rate, stop, stats):
    interval = 1.0 / rate
    seq = 0
    gaps = stats["gaps"]
    next_at = time.monotonic()
    while not stop.is_set():
        gaps.saw_protocol(session.protocol)
        if session.protocol is not None:
            seq += 1
            session.publish(channel, str(seq).encode())
            gaps.event(time.monotonic())
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    stats["published"] = seq


async def receive(session, stats):
    gaps = stats["gaps"]
    seen = stats["seen"]
    while True:
        _ident, _channel, data = await session.read()
        gaps.saw_protocol(session.protocol)
        gaps.event(time.monotonic())
        seq = int(data)
        if seq in seen:
            stats["duplicates"] += 1
        seen.add(seq)
        stats["ready"].set()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pub-ident", required=True)
    p.add_argument("--sub-ident", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--subscribers", type=int, default=2)
    p.add_argument("--rate", type=float, default=200.0)
    args = p.parse_args()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    subs = []
    for _ in range(args.subscribers):
        session = ClientSession(args.host, args.port, args.sub_ident, args.secret)
        session.subscribe(args.channel)
        stats = {"gaps": Gaps(), "seen": set(), "duplicates": 0, "ready": asyncio.Event()}
        stats["task"] = asyncio.ensure_future(receive(session, stats))
        subs.append((session, stats))

    publisher = ClientSession(args.host, args.port, args.pub_ident, args.secret)
    pub_stats = {"gaps": Gaps(), "published": 0}
    pub_task = asyncio.ensure_future(publish(publisher, args.channel, args.rate, stop, pub_stats))

    await asyncio.gather(*(s["ready"].wait() for _, s in subs))
    print("ready", flush=True)
    await stop.wait()
    await pub_task
    await asyncio.sleep(2.0)  # deliveries still on their way

    published = pub_stats["published"]
    report = {
        "published": published,
        "publisher_longest_gap_s": round(pub_stats["gaps"].longest, 3),
        "publisher_connections": pub_stats["gaps"].connections,
        "subscribers": [],
    }
    for _session, s in subs:
        seen = s["seen"]
        first = min(seen)
        expected = set(range(first, published + 1))
        report["subscribers"].append({
            "first_seq": first,
            "received": len(seen & expected),
            "lost": len(expected - seen),
            "duplicates": s["duplicates"],
            "longest_gap_s": round(s["gaps"].longest, 3),
            "connections": s["gaps"].connections,
        })
    print(json.dumps(report), flush=True)
    for s in (s for _, s in subs):
        s["task"].cancel()
    for session in [publisher] + [session for session, _ in subs]:
        try:
            await asyncio.wait_for(session.close(), 2)
        except (asyncio.TimeoutError, Exception):
            pass


asyncio.run(main())
