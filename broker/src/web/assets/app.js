// Progressive enhancement only: every form works without this file.
"use strict";

document.addEventListener("click", (event) => {
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    const source = document.querySelector(copy.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent.trim()).then(() => { copy.textContent = "Copied"; });
    }
  }
});

// Destructive buttons ask first.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Names completed as you type, from /names.
let listCount = 0;
for (const input of document.querySelectorAll("input[data-complete]")) {
  const list = document.createElement("datalist");
  list.id = "names-" + (++listCount);
  input.after(list);
  input.setAttribute("list", list.id);
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = input.value.trim();
      if (!q) { return; }
      const url = "/names?kind=" + encodeURIComponent(input.dataset.complete) + "&q=" + encodeURIComponent(q);
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) { return; }
      list.replaceChildren(...(await response.json()).map((name) => {
        const option = document.createElement("option");
        option.value = name;
        return option;
      }));
    }, 150);
  });
}

// Times in the reader's own zone.
for (const t of document.querySelectorAll("time[data-unix]")) {
  t.textContent = new Date(Number(t.dataset.unix) * 1000).toLocaleString();
}

// Parts that refresh by themselves (the operator's cluster table).
for (const part of document.querySelectorAll("[data-refresh][id]")) {
  const { id } = part;
  const url = part.dataset.refresh;
  setInterval(async () => {
    const response = await fetch(url, { credentials: "same-origin" });
    const current = document.getElementById(id);
    if (response.ok && current) {
      const next = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(id);
      if (next) { current.replaceWith(next); }
    }
  }, 3000);
}

// Live: the messages of the chosen channels as they arrive (server-sent events).
const live = document.getElementById("live");
if (live) {
  const rows = live.querySelector("tbody");
  const status = document.getElementById("live-status");
  const rate = document.getElementById("live-rate");
  const pause = document.getElementById("live-pause");
  const kept = 200;
  let paused = false;
  let arrived = 0;
  // From the past: each message in the order kept, then on live. A reconnect sends the last
  // event's id and goes on after the last message shown, per channel.
  const from = live.dataset.from ? "&from=" + encodeURIComponent(live.dataset.from) : "";
  const feed = new EventSource("/live/events?channels=" + encodeURIComponent(live.dataset.channels) + from);
  feed.addEventListener("open", () => { status.textContent = "Connected"; });
  feed.addEventListener("closed", (e) => { status.textContent = e.data; feed.close(); });
  feed.addEventListener("error", () => {
    if (feed.readyState !== EventSource.CLOSED) status.textContent = "Reconnecting…";
  });
  feed.addEventListener("message", (e) => {
    arrived += 1;
    if (paused) return;
    const m = JSON.parse(e.data);
    const row = document.createElement("tr");
    const cell = (text) => { const td = document.createElement("td"); td.textContent = text; row.append(td); return td; };
    cell(new Date(m.at).toLocaleTimeString());
    cell(m.channel);
    cell(m.ident);
    const payload = cell("");
    const pre = document.createElement("pre");
    pre.textContent = m.payload;
    pre.className = m.kind;
    payload.append(pre);
    if (m.kind === "binary" || m.payload.length < m.size) {
      const size = document.createElement("small");
      size.textContent = `${m.kind}, ${m.size} bytes`;
      payload.append(size);
    }
    rows.prepend(row);
    while (rows.rows.length > kept) rows.deleteRow(-1);
  });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
  });
  setInterval(() => { rate.textContent = String(arrived); arrived = 0; }, 1000);
}
