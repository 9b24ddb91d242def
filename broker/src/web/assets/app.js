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
