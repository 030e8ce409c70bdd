// rediswq dashboard: draws the queue list or one queue's page from the server's JSON, polled every
// read cycle. Text from the server is only ever set as textContent (never parsed as HTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const csrf = document.querySelector('meta[name="rediswq-csrf"]').content;
const actionsOn = document.querySelector('meta[name="rediswq-actions"]').content === "on";
let intervalMs = 2000;

// The action token: from the address's fragment (#token=..., never sent to the server), kept for
// this tab only, or asked for once at the first action.
(function takeToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("rediswq-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function num(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en"); }
function rate(r) { return r === null || r === undefined ? "-" : `${r.toFixed(1)}/s`; }
function secs(s) {
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-"; }

// Done (green) and failed (red) per second over the last `spanSecs`, newest on the right.
function chart(series, width, height, spanSecs) {
  const box = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const peak = Math.max(0.001, ...series.done_per_sec, ...series.failed_per_sec);
  box.append(svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, stroke: "#e5e7eb" }));
  for (const [values, color] of [[series.done_per_sec, "#15803d"], [series.failed_per_sec, "#b91c1c"]]) {
    const points = values.map((v, i) => {
      const x = width * (1 - Math.min(series.ago_secs[i], spanSecs) / spanSecs);
      const y = height - 1 - (height - 2) * (v / peak);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    if (points.length) box.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 1.5 }));
  }
  const title = svg("title", {});
  title.textContent = `peak ${peak.toFixed(1)}/s; done (green) and failed (red) per second`;
  box.append(title);
  return box;
}

function state(q) {
  return el("span", { class: `state ${q.closed ? "closed" : "open"}`, text: q.closed ? "closed" : "open" });
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text || "";
  box.hidden = !text;
}

function showNotice(text) {
  const box = document.getElementById("notice");
  box.textContent = text || "";
  box.hidden = !text;
}

function listPage(data) {
  document.getElementById("crumb").textContent = `${data.queues.length} queue(s)`;
  const head = el("tr", {}, ...["queue", "state", "pending", "leased", "delayed", "done", "failed", "dead",
    "rate", "drains in", "done / failed per s"].map((h) => el("th", { text: h })));
  const rows = data.queues.map((q) => {
    const link = el("a", { href: `/queue?name=${encodeURIComponent(q.name)}`, text: q.name });
    const cell = (cls, value) => el("td", { class: cls, text: value });
    return el("tr", { "data-queue": q.name },
      el("td", { class: "c-name" }, link), el("td", { class: "c-state" }, state(q)),
      cell("c-pending", num(q.pending)), cell("c-leased", num(q.leased)), cell("c-delayed", num(q.delayed)),
      cell("c-done", num(q.done)), cell("c-failed", num(q.failed)), cell(`c-dead${q.dead ? " dead" : ""}`, num(q.dead)),
      cell("c-rate", rate(q.rate_per_sec)), cell("c-drain", q.drain_text),
      el("td", { class: "c-chart" }, chart(q.series, 160, 28, 300)));
  });
  const body = rows.length ? rows : [el("tr", {}, el("td", { colspan: 11, class: "muted", text: "No queues yet." }))];
  return el("table", { id: "queues" }, el("thead", {}, head), el("tbody", {}, ...body));
}

function card(label, value, id) { return el("div", { class: "card", id }, el("b", { text: value }), label); }

function table(id, headers, rows, empty) {
  const head = el("tr", {}, ...headers.map(([h, cls]) => el("th", { class: cls || "", text: h })));
  const body = rows.length ? rows : [el("tr", {}, el("td", { colspan: headers.length, class: "muted text", text: empty }))];
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body));
}

function queuePage(q) {
  document.getElementById("crumb").textContent = `/ ${q.name}`;
  const parts = [el("h1", {}, `${q.name} `, state(q)),
    el("div", { class: "cards" }, card("pending", num(q.pending), "n-pending"), card("leased", num(q.leased), "n-leased"),
      card("delayed", num(q.delayed), "n-delayed"), card("done", num(q.done), "n-done"), card("failed", num(q.failed), "n-failed"),
      card("dead", num(q.dead), "n-dead"), card("rate", rate(q.rate_per_sec), "n-rate"), card("drains in", q.drain_text, "n-drain"))];
  if (actionsOn) {
    parts.push(el("div", { class: "actions" },
      button(q.closed ? "Reopen" : "Close", { action: q.closed ? "reopen" : "close", queue: q.name }, !q.closed,
        "close-button")));
  }
  const span = Math.max(60, ...q.series.ago_secs);
  parts.push(el("h2", {}, `History, last ${secs(span)}: `, el("span", { class: "legend-done", text: "done" }), " and ",
    el("span", { class: "legend-failed", text: "failed" }), " per second"));
  parts.push(chart(q.series, 720, 120, span));
  parts.push(el("h2", { text: `Holders (${q.holders.length} of ${q.leased} leased)` }));
  parts.push(table("holders", [["item", "text"], ["worker", "text"], ["attempt"], ["held for"], ["expires in"]],
    q.holders.map((h) => el("tr", {}, el("td", { class: "text", text: h.id }), el("td", { class: "text", text: h.worker || h.error }),
      el("td", { text: String(h.attempt) }), el("td", { text: secs(h.held_secs) }),
      el("td", { text: h.expires_in_secs >= 0 ? secs(h.expires_in_secs) : "expired" }))),
    "Nobody holds an item."));
  parts.push(el("h2", { text: `Dead letters (${q.dead_letters.length} of ${q.dead_total}, newest first)` }));
  if (actionsOn && q.dead_total) {
    parts.push(el("div", { class: "actions" }, button("Requeue all", { action: "requeue", queue: q.name }, false, "requeue-all"),
      button("Purge all", { action: "purge", queue: q.name }, true, "purge-all")));
  }
  const deadHeaders = [["item", "text"], ["attempts"], ["dead since", "text"], ["error", "text"], ["payload", "text"]];
  if (actionsOn) deadHeaders.push(["", "text"]);
  parts.push(table("dead-letters", deadHeaders, q.dead_letters.map((d) => {
    const row = el("tr", { "data-id": d.id }, el("td", { class: "text", text: d.id }), el("td", { text: String(d.attempts) }),
      el("td", { class: "text", text: when(d.dead_at_ms) }), el("td", { class: "wrap c-error", text: d.error }),
      el("td", { class: "wrap", text: d.payload }));
    if (actionsOn) {
      row.append(el("td", { class: "text" }, button("Requeue", { action: "requeue", queue: q.name, ids: [d.id] }, false, `requeue-${d.id}`),
        " ", button("Purge", { action: "purge", queue: q.name, ids: [d.id] }, true, `purge-${d.id}`)));
    }
    return row;
  }), "No dead letters."));
  return el("div", {}, ...parts);
}

function button(label, request, dangerous, id) {
  const node = el("button", { type: "button", class: dangerous ? "danger" : "", "data-action": id, text: label });
  node.addEventListener("click", () => act(request, dangerous, label));
  return node;
}

async function act(request, dangerous, label) {
  if (dangerous && !confirm(`${label} on queue ${request.queue}?`)) return;
  let token = sessionStorage.getItem("rediswq-token");
  if (!token) {
    token = prompt("The dashboard's action token (printed when it started):");
    if (!token) return;
    sessionStorage.setItem("rediswq-token", token);
  }
  const reply = await fetch("/api/action", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Rediswq-Csrf": csrf, "X-Rediswq-Token": token },
    body: JSON.stringify(request),
  });
  const result = await reply.json().catch(() => ({ error: `HTTP ${reply.status}` }));
  if (reply.status === 403 && /token/.test(result.error || "")) sessionStorage.removeItem("rediswq-token");
  if (reply.ok) showNotice(`${request.queue}: ${result.message}`);
  else showError(`${label} refused: ${result.error}`);
  refresh();
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  const name = location.pathname === "/queue" ? new URLSearchParams(location.search).get("name") : null;
  try {
    const reply = await fetch(name === null ? "/api/queues" : `/api/queue?name=${encodeURIComponent(name)}`);
    const data = await reply.json();
    const main = document.getElementById("main");
    if (!reply.ok) {
      main.replaceChildren(el("p", { text: data.error || `HTTP ${reply.status}` }));
    } else {
      if (data.interval_secs) intervalMs = data.interval_secs * 1000;
      main.replaceChildren(name === null ? listPage(data) : queuePage(data));
      document.getElementById("updated").textContent = `updated ${when(data.updated_ms)}`;
      if (data.error) showError(`Redis: ${data.error}`);
      else if (!document.getElementById("error").textContent.includes("refused")) showError("");
    }
  } catch (e) {
    showError(`the dashboard does not answer (${e.message})`);
  }
  timer = setTimeout(refresh, intervalMs);
}

refresh();
