"""The web app in a real browser (Debian's chromium, driven by Playwright).

Run by cluster-tests/tests/it/web.rs against real `hpfriends serve` processes:

  browser.py scenarios   the operator invites; each user sets a password, makes
                         keys, offers and accepts shares, joins a group, all in
                         the browser; the real hpfeeds client with those keys
                         shows exactly the delivery the graph says; a share
                         revoked and a key deleted in the browser take effect on
                         live subscribers; bad input, CSRF, forbidden pages;
                         the History of each; the Live page (what may be read
                         arrives, nothing else; a stalled stream is closed as a
                         slow consumer); axe-core on every page; a
                         screenshot of every page.
  browser.py cluster     sign in on node 1, act on node 2, sign out on node 3:
                         the session is gone on node 1; a Live page on node 2
                         shows what is published through node 3.

Settings come from the environment (see web.rs). Exits non-zero on the first
failed check, naming it.
"""

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

URLS = os.environ["WEB_URLS"].split(",")
WEB = URLS[0]
TOKEN = os.environ["OPERATOR_TOKEN"]
HPFEEDS = os.environ.get("HPFEEDS", "")
HPFEEDS_HOST, HPFEEDS_PORT = (os.environ.get("HPFEEDS_ADDR", "127.0.0.1:0").rsplit(":", 1))
SHOTS = os.environ["SCREENSHOTS"]
PASSWORD = "correct horse battery"
AXE = Axe()


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def launch(p):
    return p.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox", "--disable-gpu"],
    )


def accessible(page, name):
    """No serious or critical axe-core violation, and a screenshot."""
    result = AXE.run(page)
    bad = [v for v in result.response["violations"] if v["impact"] in ("serious", "critical")]
    check(not bad, f"{name}: no serious accessibility violations {[(v['id'], v['help']) for v in bad]}")
    ids = page.evaluate("[...document.querySelectorAll('[id]')].map(e => e.id)")
    check(len(ids) == len(set(ids)), f"{name}: every id once (a label must name one input)")
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def sign_in_operator(page, base=WEB):
    page.goto(base + "/sign-in")
    page.get_by_text("Operator", exact=True).click()
    page.get_by_label("Operator token").fill(TOKEN)
    page.get_by_role("button", name="Sign in as operator").click()
    expect(page.get_by_role("heading", name="Operator")).to_be_visible()


def invite(page, name):
    page.goto(WEB + "/operator")
    page.get_by_label("Invite a new user").fill(name)
    page.get_by_role("button", name="Invite", exact=True).click()
    return page.locator("#invite-link").inner_text().strip()


def set_password(page, link):
    page.goto(link)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    # The new user is signed in at once, as after a sign-up.
    expect(page.get_by_role("heading", name="Authkeys")).to_be_visible()


def sign_in(page, name, base=WEB):
    page.goto(base + "/sign-in")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Authkeys")).to_be_visible()


def create_key(page, ident, publish="", subscribe=""):
    page.goto(WEB + "/keys")
    form = page.locator("form[action='/keys']")
    form.get_by_label("Ident").fill(ident)
    form.get_by_label("Publishes to").fill(publish)
    form.get_by_label("Subscribes to").fill(subscribe)
    form.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name=re.compile(f"Key {re.escape(ident)} created"))).to_be_visible()
    return page.locator("#secret").inner_text().strip()


def offer(page, to, channel, kind="shares"):
    page.goto(WEB + "/shares")
    page.get_by_label("With (a user, or group:NAME)").fill(to)
    page.get_by_label("Channel").fill(channel)
    page.locator(f"input[name=kind][value={kind}]").check()
    page.get_by_role("button", name="Offer share").click()


def answer_offer(page, sender, channel, button="Accept"):
    page.goto(WEB + "/shared-with-you")
    row = page.locator("tr", has_text=sender).filter(has_text=channel)
    row.get_by_role("button", name=button).click()
    expect(page.get_by_role("heading", name="Shared with you")).to_be_visible()


def subscriptions():
    """hpfeeds subscriptions on the node the sensors log in to (its /metrics)."""
    text = urllib.request.urlopen(URLS[-1] + "/metrics", timeout=5).read().decode()
    found = re.search(r"^hpfeeds_broker_subscriptions (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def subscribe(ident, secret, channel):
    """The real hpfeeds client, once the node has its subscription."""
    before = subscriptions()
    return Subscriber(ident, secret, channel).subscribed(before)


# Every client started, stopped when the checks end (`main`): the hpfeeds
# client reconnects forever, so one left behind would outlive the node it used.
STARTED = []


class Subscriber:
    """The real hpfeeds client subscribed with a key made in the browser."""

    def __init__(self, ident, secret, channel):
        self.ident = ident
        self.lines = queue.Queue()
        self.seen = []
        self.proc = subprocess.Popen(
            [HPFEEDS, "subscribe", "--host", HPFEEDS_HOST, "-p", HPFEEDS_PORT, "-i", ident, "-s", secret, "-c", channel],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        STARTED.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def subscribed(self, before, timeout=10):
        """Waits until the node counts this client's subscription."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if subscriptions() > before:
                return self
            time.sleep(0.05)
        raise AssertionError(f"{self.ident} did not subscribe within {timeout} s")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def drain(self):
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def wait_for(self, text, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.drain():
                return True
            time.sleep(0.05)
        return False

    def exited(self, timeout=10):
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        self.proc.kill()


def publish(ident, secret, channel, message):
    subprocess.run(
        [HPFEEDS, "publish", "--host", HPFEEDS_HOST, "-p", HPFEEDS_PORT, "-i", ident, "-s", secret, "-c", channel, message],
        check=True, timeout=20, capture_output=True,
    )


def delivered(publisher, message, to, not_to):
    """`message` reaches every subscriber of `to`, then none of `not_to`."""
    publish(*publisher, message)
    for s in to:
        if not s.wait_for(message):
            return False
    time.sleep(0.5)
    return all(message not in s.drain() for s in not_to)


FLOOD = """
import sys, hpfeeds
host, port, ident, secret, channel, count = sys.argv[1:]
client = hpfeeds.new(host, int(port), ident, secret)
payload = "x" * 4000
for i in range(int(count)):
    client.publish(channel, f"flood-{i} {payload}")
client.close()
"""


def stalled_live_browser(page, publisher, channel, subscriber, count=3000):
    """A Live stream whose reader stops reading is closed as a slow consumer,
    while an hpfeeds subscriber of the same channel gets every message."""
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "hpfriends_session")
    url = urllib.parse.urlparse(WEB)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((url.hostname, url.port))
    stalled.sendall(f"GET /live/events?channels={channel} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                    f"Cookie: hpfriends_session={cookie}\r\n\r\n".encode())
    python = os.path.join(os.path.dirname(HPFEEDS), "python")
    subprocess.run([python, "-c", FLOOD, HPFEEDS_HOST, HPFEEDS_PORT, *publisher, channel, str(count)],
                   check=True, timeout=120)
    check(subscriber.wait_for(f"flood-{count - 1} ", timeout=60), "the hpfeeds subscriber got the last message")
    got = subscriber.drain().count("flood-")
    check(got == count and subscriber.proc.poll() is None, f"the hpfeeds subscriber got all {count} messages ({got}) and stays")
    stalled.settimeout(30)
    received = bytearray()
    while chunk := stalled.recv(1 << 20):
        received.extend(chunk)
    stalled.close()
    check(b"closed: too slow" in received, f"the stalled Live stream was closed as a slow consumer ({len(received)} bytes read)")


def scenarios(p):
    browser = launch(p)
    operator = browser.new_context().new_page()
    sign_in_operator(operator)
    people = {}
    for name in ["jojo", "mark", "alice", "eve"]:
        link = invite(operator, name)
        check("/invite/" in link, f"the operator got an invitation link for {name}")
        page = browser.new_context().new_page()
        if name == "jojo":
            page.goto(link)
            accessible(page, "invitation")
            page.get_by_label("New password").fill("short")
            page.get_by_label("The same password again").fill("short")
            page.get_by_role("button", name="Set password").click()
            check("at least 10 characters" in page.locator("#password-error").inner_text(),
                  "a short password is refused next to its field")
        set_password(page, link)
        sign_in(page, name)
        people[name] = page
    jojo, mark, alice, eve = (people[n] for n in ["jojo", "mark", "alice", "eve"])
    operator.goto(WEB + "/operator")
    check(operator.locator("tbody tr", has_text="active").count() == 4, "the operator sees four active users")
    accessible(operator, "operator")

    # Keys, made in the browser.
    ch, geo = "dionaea.captures", "geoloc.events"
    jojo_key = ("jojo-sensor", create_key(jojo, "jojo-sensor", publish=f"{ch}, {geo}"), ch)
    accessible(jojo, "authkeys")
    keys = {n: create_key(people[n], f"{n}-reader", subscribe=f"{ch}, {geo}") for n in ["mark", "alice", "eve"]}

    # Bad input: the message shows next to the field and nothing changes.
    create_form = jojo.locator("form[action='/keys']")
    create_form.get_by_label("Ident").fill("jojo-sensor")
    create_form.get_by_role("button", name="Create key").click()
    check(jojo.locator("#ident-error").is_visible() and "already taken" in jojo.locator("#ident-error").inner_text(),
          "a duplicate ident is refused next to the Ident field")
    jojo.locator("form[action='/keys']").get_by_label("Ident").fill("x" * 300)
    jojo.locator("form[action='/keys']").get_by_role("button", name="Create key").click()
    check("limit is 255" in jojo.locator("#ident-error").inner_text(), "a 300-byte ident is refused with its limit")
    jojo.goto(WEB + "/keys")
    check(jojo.locator("tbody tr").count() == 1, "refused keys changed nothing")
    offer(jojo, "nobody", ch)
    check("unknown user" in jojo.locator("#to-error").inner_text(), "a share to an unknown user is refused at the field")
    offer(jojo, "group:nogroup", ch)
    check("unknown group" in jojo.locator("#to-error").inner_text(), "a share to a missing group is refused at the field")
    offer(jojo, "mark", " ")  # a blank the browser lets through; the server trims it
    check("must not be empty" in jojo.locator("#channel-error").inner_text(), "an empty channel is refused at the field")
    jojo.goto(WEB + "/shares")
    check("You share nothing yet." in jojo.content(), "refused shares changed nothing")

    # Names complete as you type (app.js asks /names).
    jojo.goto(WEB + "/shares")
    jojo.get_by_label("With (a user, or group:NAME)").press_sequentially("ma")
    option = jojo.locator("datalist option[value=mark]")
    option.wait_for(state="attached", timeout=5000)
    check(option.count() == 1, "typing 'ma' offers mark")

    # Scenario 1: a direct share, accepted by mark in the browser.
    offer(jojo, "mark", ch)
    accessible(jojo, "shares")
    subs = {n: subscribe(f"{n}-reader", keys[n], ch) for n in ["mark", "alice", "eve"]}
    check(delivered(jojo_key, "before-accept", [], list(subs.values())), "an offer not yet accepted carries nothing")
    answer_offer(mark, "jojo", ch)
    accessible(mark, "shared-with-you")
    mark.goto(WEB + "/keys")
    check("node 1 (1)" in mark.locator("tr", has_text="mark-reader").inner_text(),
          "Authkeys shows mark's key connected on node 1")
    check(delivered(jojo_key, "scenario-1", [subs["mark"]], [subs["alice"], subs["eve"]]),
          "scenario 1: mark gets jojo's message, alice and eve do not")

    # Scenario 2: mark relays to alice with shares_all.
    offer(mark, "alice", ch, "shares_all")
    answer_offer(alice, "mark", ch)
    check(delivered(jojo_key, "scenario-2", [subs["mark"], subs["alice"]], [subs["eve"]]),
          "scenario 2: alice gets jojo's message through mark")
    alice.goto(WEB + "/shared-with-you")
    check("jojo -[shares]-> mark -[shares_all]-> alice" in alice.locator("main").inner_text(), "alice sees the path jojo's data takes")
    jojo.goto(WEB + "/audience")
    accessible(jojo, "audience")
    check(jojo.locator("td", has_text="alice").count() >= 1, "jojo's Audience lists alice (relayed)")
    jojo.goto(WEB + f"/audience?to=eve&on={ch}")
    check(jojo.locator("ul.names li", has_text="eve").count() == 1, "the preview says eve would be added")

    # Scenario 3: a group; its admin accepts; an invited member who has not joined gets nothing.
    mark.goto(WEB + "/groups")
    mark.get_by_label("Group name").fill("honeynet")
    mark.get_by_role("button", name="Create group").click()
    mark.get_by_label("Invite to honeynet").fill("nobody")
    mark.get_by_role("button", name="Invite", exact=True).click()
    check("unknown user" in mark.locator("#user-error").inner_text(), "inviting an unknown user is refused at the field")
    mark.goto(WEB + "/groups")
    mark.get_by_label("Group name").fill("honeynet")
    mark.get_by_role("button", name="Create group").click()
    check("already exists" in mark.locator("#name-error").inner_text(), "a second group of the same name is refused at the field")
    for member in ["alice", "eve"]:
        mark.get_by_label("Invite to honeynet").fill(member)
        mark.get_by_role("button", name="Invite", exact=True).click()
    accessible(mark, "groups")
    alice.goto(WEB + "/groups")
    alice.locator("section.group").get_by_role("button", name="Accept").click()
    offer(jojo, "group:honeynet", geo)
    answer_offer(mark, "jojo", geo)
    geo_subs = {n: subscribe(f"{n}-reader", keys[n], geo) for n in ["mark", "alice", "eve"]}
    check(delivered((jojo_key[0], jojo_key[1], geo), "scenario-3", [geo_subs["mark"], geo_subs["alice"]], [geo_subs["eve"]]),
          "scenario 3: accepted members get the group's share, the invited eve does not")
    # The admin makes alice an admin too and removes the invited eve.
    mark.goto(WEB + "/groups")
    mark.locator("ul.members li", has_text="alice").get_by_role("button", name="Make admin").click()
    mark.once("dialog", lambda d: d.accept())
    mark.locator("ul.members li", has_text="eve").get_by_role("button", name="Remove").click()
    members = mark.locator("section.group ul.members").inner_text()
    check("alice" in members and "admin" in mark.locator("ul.members li", has_text="alice").inner_text()
          and "eve" not in members, f"alice is an admin and eve is gone ({members!r})")

    jojo.goto(WEB + "/graph")
    accessible(jojo, "graph")
    relayed = jojo.locator("svg.graph g.node", has=jojo.locator("rect[x='800']")).all_text_contents()
    drawn = jojo.locator("svg.graph").text_content()
    check(all(n in drawn for n in ["mark", "group:honeynet"]) and relayed == ["alice"],
          f"jojo's graph draws mark and the group, and alice as reached through a relay ({relayed})")

    # Live: mark watches the channel in the browser; so does eve, who may not read jojo's data.
    for watcher in (mark, eve):
        watcher.goto(WEB + f"/live?channels={ch}")
        expect(watcher.locator("#live-status")).to_have_text("Connected")
    publish(jojo_key[0], jojo_key[1], ch, '{"src_ip": "192.0.2.7", "event": "live-1"}')
    row = mark.locator("#live-messages tbody tr", has_text="live-1")
    expect(row).to_be_visible()
    check("jojo-sensor" in row.inner_text() and '"src_ip": "192.0.2.7"' in row.inner_text(),
          "mark's Live page shows jojo's message as it arrives, JSON pretty-printed, with its publisher")
    accessible(mark, "live")
    time.sleep(0.5)
    check(eve.locator("#live-messages tbody tr").count() == 0, "eve's Live page shows nothing of jojo's")
    # Started an hour ago, the page first shows what was published before it was opened.
    mark.select_option("#from", "1h")
    mark.get_by_role("button", name="Watch").click()
    expect(mark.locator("#live-messages tbody tr", has_text="live-1")).to_be_visible()
    check("from=1h" in mark.url, "mark's Live page started an hour ago shows live-1, published before it was opened")

    # The key's activity: what it published, summed over the cluster.
    jojo.goto(WEB + "/keys")
    jojo.get_by_role("link", name="jojo-sensor").click()
    expect(jojo.get_by_role("heading", name="Key jojo-sensor")).to_be_visible()
    published = jojo.locator("dl.stats dd").first.inner_text()
    check(re.match(r"[1-9]\d* messages", published), f"jojo's key page counts what it published ({published!r})")
    kept = jojo.get_by_role("heading", name="Kept").locator("xpath=following-sibling::p[1]").inner_text()
    check("kept in the archive for 7days" in kept and re.search(r"holds [1-9]\d* messages", kept) is not None,
          f"jojo's key page says how long what it publishes is kept ({kept!r})")
    accessible(jojo, "key-activity")
    # jojo keeps what they publish on a channel for two days only.
    jojo.goto(WEB + "/keys")
    jojo.fill("#keep-channel", "jojo.private")
    jojo.fill("#keep-for", "2d")
    jojo.get_by_role("button", name="Set").click()
    keeps = jojo.get_by_role("table", name="My keeps").inner_text()
    check("jojo.private" in keeps and "2days" in keeps, f"the Authkeys page lists jojo's keep ({keeps!r})")

    # A filter set on the Shares page: checked before it is saved, then applied to
    # mark's subscriber, alice's (through mark's relay) and mark's Live page.
    jojo.goto(WEB + "/shares")
    row = lambda: jojo.locator("tr", has_text="mark").filter(has_text=ch)
    row().locator("summary", has_text="Filter").click()
    row().get_by_label("Only messages where (CEL)").fill('payload.event == ')
    row().get_by_role("button", name="Save filter").click()
    check("syntax error" in jojo.locator("#where-error").inner_text(), "a CEL syntax error is refused at the expression")
    row().get_by_label("Only messages where (CEL)").fill('payload.event != "private"')
    row().get_by_label("Remove these fields (JSON Pointers, one per line)").fill("/src_ip")
    row().get_by_role("button", name="Save filter").click()
    check('where payload.event != "private"; redact /src_ip' in row().inner_text(), "the share's row shows its filter")
    accessible(jojo, "shares-filtered")
    publish(jojo_key[0], jojo_key[1], ch, '{"src_ip": "192.0.2.7", "event": "private"}')
    publish(jojo_key[0], jojo_key[1], ch, '{"src_ip": "192.0.2.7", "event": "filtered-1"}')
    for name in ["mark", "alice"]:
        check(subs[name].wait_for('{"event":"filtered-1"}'), f"{name} gets the filtered version")
        got = subs[name].drain()
        check('"private"' not in got and '"src_ip": "192.0.2.7", "event": "filtered-1"' not in got,
              f"{name} gets neither the dropped message nor the original")
    live = mark.locator("#live-messages tbody tr", has_text="filtered-1")
    expect(live).to_be_visible()
    check("192.0.2.7" not in live.inner_text(), "mark's Live page shows the filtered version")

    # A share revoked in the browser stops delivery, to hpfeeds subscribers and to the Live page.
    jojo.goto(WEB + "/shares")
    jojo.once("dialog", lambda d: d.accept())
    jojo.locator("tr", has_text="mark").filter(has_text=ch).get_by_role("button", name="Revoke").click()
    check(delivered(jojo_key, "after-revoke", [], [subs["mark"], subs["alice"]]), "a revoked share stops delivery")
    check(mark.locator("#live-messages tbody tr", has_text="after-revoke").count() == 0
          and mark.locator("#live-status").inner_text() == "Connected",
          "after the revocation the next message does not reach mark's Live page")
    stalled_live_browser(mark, jojo_key[:2], geo, geo_subs["alice"])

    # A key deleted in the browser closes its live subscriber.
    eve.goto(WEB + "/keys")
    eve.once("dialog", lambda d: d.accept())
    eve.get_by_role("button", name="Delete").click()
    check(subs["eve"].exited() and geo_subs["eve"].exited(), "deleting a key closes its live connections")

    # History: who changed what, through which node; each sees what touches them.
    jojo.goto(WEB + "/history")
    accessible(jojo, "history")
    revoked = jojo.locator("tbody tr", has_text="remove_share").filter(has_text="to=mark").filter(has_text=ch)
    check(revoked.count() == 1 and "jojo" in revoked.inner_text(), "jojo's History shows the share jojo revoked, by jojo")
    jojo.get_by_label("Channel").fill(geo)
    jojo.get_by_role("button", name="Show").click()
    texts = jojo.locator("tbody tr").all_inner_texts()
    check(texts and all(geo in t for t in texts), f"History filtered by channel ({texts!r})")
    eve.goto(WEB + "/history")
    check(eve.locator("tbody tr", has_text="to=mark").count() == 0, "eve does not see jojo's share with mark")
    check(eve.locator("tbody tr", has_text="remove_key").count() == 1, "eve sees her deleted key")
    operator.goto(WEB + "/history")
    check(operator.locator("tbody tr", has_text="invite_user").count() == 4, "the operator sees every invitation")
    jojo.goto(WEB + "/history?since=yesterday")
    check("since must be a time" in jojo.get_by_role("alert").inner_text(), "a bad time says what is wrong")

    # Account page and an API token that works with the API.
    mark.goto(WEB + "/account")
    accessible(mark, "account")
    mark.get_by_label("Label of a new token").fill("laptop")
    mark.get_by_label("Your password").fill(PASSWORD)
    mark.get_by_role("button", name="Make token").click()
    token = mark.locator("#new-token").inner_text().strip()
    resp = mark.request.get(WEB + "/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
    check(resp.ok and "mark-reader" in resp.text(), "a token made in the web app works with the API")

    # CSRF: a form posted without the token is refused and changes nothing.
    resp = jojo.request.post(WEB + "/keys", form={"ident": "csrf-key", "publish": ch})
    check(resp.status == 403, f"a form without its CSRF token is refused (got {resp.status})")
    resp = jojo.request.post(WEB + "/keys/mark-reader/delete", form={"csrf": "0" * 32})
    check(resp.status == 403, "a wrong CSRF token is refused too")
    # Pages of others: the operator's page, another user's key.
    resp = jojo.request.get(WEB + "/operator")
    check(resp.status == 403, f"a user cannot open the operator page (got {resp.status})")
    jojo.goto(WEB + "/keys")
    csrf = jojo.locator("input[name=csrf]").first.get_attribute("value")
    resp = jojo.request.post(WEB + "/keys/mark-reader/delete", form={"csrf": csrf})
    check(resp.status == 403 and "another user" in resp.text(), "a user cannot delete another user's key")
    mark.goto(WEB + "/keys")
    check("mark-reader" in mark.content(), "mark's key is still there")
    resp = jojo.request.get(WEB + "/api/v1/cluster/status")
    check(resp.status == 401, "a browser session does not open the API")

    # Bad input on the Account and Operator pages.
    mark.goto(WEB + "/account")
    mark.get_by_label("Current password").fill("not my password")
    mark.get_by_label("New password").fill(PASSWORD + "?")
    mark.get_by_label("The same password again").fill(PASSWORD + "?")
    mark.get_by_role("button", name="Change password").click()
    check("not right" in mark.locator("#current-error").inner_text(), "a wrong current password is refused at its field")
    operator.goto(WEB + "/operator")
    operator.get_by_label("Invite a new user").fill("bad name")
    operator.get_by_role("button", name="Invite", exact=True).click()
    check("may only contain" in operator.locator("#name-error").inner_text(), "an invalid user name is refused at the field")

    # The core forms without JavaScript: sign in, make a key.
    plain = browser.new_context(java_script_enabled=False).new_page()
    sign_in(plain, "jojo")
    create_key(plain, "jojo-nojs", publish="plain.events")
    check(plain.locator("#secret").inner_text().strip() != "", "without JavaScript a key is made and its secret shown")

    # Signing out everywhere ends every browser's session of that user.
    second = browser.new_context().new_page()
    sign_in(second, "jojo")
    jojo.goto(WEB + "/account")
    check(jojo.locator("main li").count() >= 2, "jojo's Account lists the browsers jojo is signed in on")
    jojo.once("dialog", lambda d: d.accept())
    jojo.get_by_role("button", name="Sign out everywhere").click()
    second.goto(WEB + "/keys")
    check(jojo.url.endswith("/sign-in") and second.url.endswith("/sign-in"), "signing out everywhere signs out every browser")
    sign_in(jojo, "jojo")

    # Changing the password ends the other sessions of that user.
    other = browser.new_context().new_page()
    sign_in(other, "alice")
    alice.goto(WEB + "/account")
    alice.get_by_label("Current password").fill(PASSWORD)
    alice.get_by_label("New password").fill(PASSWORD + "!")
    alice.get_by_label("The same password again").fill(PASSWORD + "!")
    alice.get_by_role("button", name="Change password").click()
    expect(alice.get_by_role("heading", name="Account")).to_be_visible()
    other.goto(WEB + "/keys")
    check(other.url.endswith("/sign-in"), "a password change signed the other browser out")

    # Disabling a user ends their session and stops their key.
    operator.goto(WEB + "/operator")
    operator.once("dialog", lambda d: d.accept())
    operator.locator("tr", has_text="mark").get_by_role("button", name="Disable").click()
    mark.goto(WEB + "/keys")
    check(mark.url.endswith("/sign-in"), "a disabled user's session ends")
    check(subs["mark"].exited(), "a disabled user's live hpfeeds connection is closed")

    # The operator removes a user.
    operator.goto(WEB + "/operator")
    operator.once("dialog", lambda d: d.accept())
    operator.locator("tr", has_text="eve").get_by_role("button", name="Remove").click()
    check(operator.locator("tbody tr", has_text="eve").count() == 0, "the operator removes eve")

    # The operator resets a password: the new link works, the old password still does until it is used.
    operator.goto(WEB + "/operator")
    operator.locator("tr", has_text="jojo").get_by_role("button", name="Reset password").click()
    link = operator.locator("#invite-link").inner_text().strip()
    page = browser.new_context().new_page()
    page.goto(link)
    check(page.get_by_text("Welcome, jojo").is_visible(), "a reset link opens jojo's password form")

    page = browser.new_context().new_page()
    page.goto(WEB + "/sign-in")
    accessible(page, "sign-in")
    # The keyboard alone: Tab to the skip link and follow it, Tab to the fields, Enter to send.
    page.keyboard.press("Tab")
    check(page.evaluate("document.activeElement.textContent") == "Skip to content", "Tab reaches the skip link first")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    check(page.evaluate("document.activeElement.id") == "f-name", "after the skip link, Tab reaches the first field")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD + "!")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Authkeys")).to_be_visible()
    check(page.url.endswith("/keys"), "alice signs in with the keyboard alone")
    page.goto(WEB + "/sign-in")
    page.get_by_label("Name").fill("jojo")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    check("wrong name or password" in page.locator("#password-error").inner_text(), "a wrong password says so")
    browser.close()


def cluster(p):
    browser = launch(p)
    operator = browser.new_context().new_page()
    sign_in_operator(operator, URLS[0])
    operator.goto(URLS[0] + "/operator")
    operator.get_by_label("Invite a new user").fill("roamer")
    operator.get_by_role("button", name="Invite", exact=True).click()
    link = operator.locator("#invite-link").inner_text().strip()
    page = browser.new_context().new_page()
    set_password(page, link)
    sign_in(page, "roamer", URLS[0])
    # Behind a load balancer the next request may reach any node.
    page.goto(URLS[1] + "/keys")
    form = page.locator("form[action='/keys']")
    form.get_by_label("Ident").fill("roamer-sensor")
    form.get_by_label("Publishes to").fill("c")
    form.get_by_label("Subscribes to").fill("c")
    form.get_by_role("button", name="Create key").click()
    check(page.locator("#secret").is_visible(), "signed in through node 1, a key made through node 2")
    # A sensor logged in on node 3 shows on node 1's Authkeys page.
    secret = page.locator("#secret").inner_text().strip()
    sensor = subscribe("roamer-sensor", secret, "c")
    # A Live page on node 2 gets what is published on node 3 (the fan-out between nodes);
    # published until seen, as node 3 learns node 2's interest a moment after the page opens.
    page.goto(URLS[1] + "/live?channels=c")
    expect(page.locator("#live-status")).to_have_text("Connected")
    crossed = page.locator("#live-messages tbody tr", has_text="across-nodes")
    started = time.time()
    while crossed.count() == 0 and time.time() - started < 10:
        publish("roamer-sensor", secret, "c", f"across-nodes-{time.time()}")
        page.wait_for_timeout(200)
    check(crossed.count() > 0, "a Live page on node 2 shows a message published through node 3")
    page.goto(URLS[0] + "/keys")
    connected = page.locator("tr", has_text="roamer-sensor").inner_text()
    check("node 3 (1)" in connected and "node 1" not in connected, f"node 1 says the key is connected on node 3 ({connected!r})")
    operator.goto(URLS[0] + "/operator")
    check(operator.locator("#cluster span.ok", has_text="ready").count() == 3, "the operator sees all three nodes ready")
    old = [c for c in page.context.cookies() if c["name"] == "hpfriends_session"]
    check(len(old) == 1 and old[0]["httpOnly"] and old[0]["sameSite"] == "Strict",
          "the session is one HttpOnly, SameSite=Strict cookie")
    page.goto(URLS[2] + "/account")
    page.get_by_role("button", name="Sign out", exact=True).click()
    check(page.url.endswith("/sign-in"), "signed out through node 3")
    # The old cookie, presented to node 1 again, is no longer a session there
    # (node 1 applies the sign-out as it learns the entry is committed).
    page.context.add_cookies(old)
    started = time.time()
    while True:
        page.goto(URLS[0] + "/keys")
        if page.url.endswith("/sign-in") or time.time() - started > 2:
            break
    check(page.url.endswith("/sign-in"), f"the session is gone on node 1 ({time.time() - started:.3f} s after)")
    # Signing out everywhere is one entry, applied in log order: a sign-in
    # through node 1 just before it is ended too, though node 2 took the request.
    survived = 0
    for _ in range(12):
        everywhere = browser.new_context().new_page()
        sign_in(everywhere, "roamer", URLS[1])
        everywhere.goto(URLS[1] + "/account")
        fresh = browser.new_context().new_page()
        sign_in(fresh, "roamer", URLS[0])
        everywhere.once("dialog", lambda d: d.accept())
        everywhere.get_by_role("button", name="Sign out everywhere").click()
        everywhere.wait_for_url("**/sign-in")
        started = time.time()
        while True:
            fresh.goto(URLS[0] + "/keys")
            if fresh.url.endswith("/sign-in") or time.time() - started > 2:
                break
        survived += 0 if fresh.url.endswith("/sign-in") else 1
        fresh.context.close()
        everywhere.context.close()
    check(survived == 0, f"signing out everywhere through node 2 ended the sign-ins through node 1 ({survived} of 12 survived)")
    # Disabled through node 1: the sensor logged in on node 3 is closed.
    operator.once("dialog", lambda d: d.accept())
    operator.locator("tr", has_text="roamer").get_by_role("button", name="Disable").click()
    check(sensor.exited(), "disabling a user on node 1 closes their sensor on node 3")
    browser.close()


def main():
    os.makedirs(SHOTS, exist_ok=True)
    try:
        with sync_playwright() as p:
            {"scenarios": scenarios, "cluster": cluster}[sys.argv[1]](p)
    finally:
        for s in STARTED:
            s.proc.kill()
            s.proc.wait()
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
