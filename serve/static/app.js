// The page of `retro serve`: ask a question, show the answer, its cited evidence and each stage's latency.
// It renders POST /v1/ask's body (SearchResult.ask_dict, README "Search and ask"). Every text from the
// server is set with textContent or a text node: evidence is never parsed as HTML.
"use strict";

const STAGES = ["bm25", "static", "expanded", "cheap", "medium", "expensive"]; // pipelines.results.STAGES that rank

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = document.getElementById("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function call(method, path, body) {
  const res = await fetch(path, { method, headers: headers(), body: body && JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const why = data && data.detail ? data.detail : res.status + " " + res.statusText;
    throw new Error(why);
  }
  return data;
}

async function loadInfo() {
  const info = document.getElementById("index-info");
  try {
    const d = await call("GET", "/v1/index");
    info.textContent = `${d.path}: ${d.docs.toLocaleString()} documents, ${d.chunks.toLocaleString()} chunks, ` +
      `${d.tokens.toLocaleString()} tokens, ${d.shards} shard(s), generation ${d.generation}; ` +
      `reader ${d.reader || "none (evidence only)"}`;
    document.getElementById("k").max = d.limits.max_k;
    document.getElementById("hops").max = d.limits.max_hops;
  } catch (e) {
    info.textContent = "index info: " + e.message;
  }
}

// text with the spans [a, b) of `spans` wrapped in <mark>, as text nodes only
function marked(text, spans) {
  const td = el("td", null, "text");
  let at = 0;
  for (const [a, b] of spans.sort((x, y) => x[0] - y[0])) {
    if (a < at) continue;
    td.appendChild(document.createTextNode(text.slice(at, a)));
    td.appendChild(el("mark", text.slice(a, b)));
    at = b;
  }
  td.appendChild(document.createTextNode(text.slice(at)));
  return td;
}

function renderAnswer(d) {
  const p = document.getElementById("answer");
  const cites = document.getElementById("citations");
  const log = document.getElementById("hop-log");
  cites.replaceChildren();
  log.replaceChildren();
  const a = d.answer;
  if (a === null) {
    p.textContent = "Evidence only: this server runs without a reader.";
    p.className = "answer none";
    return;
  }
  if (a.abstained) {
    p.textContent = "No answer: the evidence does not hold it (the reader abstained).";
    p.className = "answer none";
  } else {
    p.textContent = a.text;
    p.className = "answer";
  }
  for (const c of a.citations) {
    const n = d.neighbours[c.rank - 1];
    const doc = n ? n.doc_id : "?";
    cites.appendChild(el("li", `cited: evidence #${c.rank} (${doc}, chunk ${c.chunk}), characters ${c.char_start}-${c.char_end}`));
  }
  if (a.hops.length > 1) {
    for (const h of a.hops) log.appendChild(el("li", `hop ${h.hop}: "${h.query}" -> ${h.answer || "abstained"}`));
  }
  cites.appendChild(el("li", `reader ${a.reader}, ${a.mode}, ${a.latency_ms.toFixed(0)} ms`, "muted"));
}

function renderLatency(d) {
  const body = document.querySelector("#latency tbody");
  body.replaceChildren();
  for (const [stage, ms] of Object.entries(d.latency_ms)) {
    const tr = el("tr");
    tr.appendChild(el("td", stage));
    tr.appendChild(el("td", ms.toFixed(1), "num"));
    body.appendChild(tr);
  }
}

function renderEvidence(d) {
  const head = document.querySelector("#evidence thead tr");
  const body = document.querySelector("#evidence tbody");
  const stages = STAGES.filter((s) => d.neighbours.some((n) => n.stages && s in n.stages));
  head.replaceChildren(...["#", "hop", "document", "tokens", "chars", ...stages.map((s) => s + " rank"), "text"]
    .map((t) => el("th", t)));
  body.replaceChildren();
  const cited = {};
  for (const c of (d.answer && d.answer.citations) || []) (cited[c.rank] = cited[c.rank] || []).push([c.char_start, c.char_end]);
  for (const n of d.neighbours) {
    const tr = el("tr", null, cited[n.rank] ? "cited" : "");
    tr.dataset.rank = n.rank;
    tr.appendChild(el("td", n.rank, "num"));
    tr.appendChild(el("td", n.hop, "num"));
    const doc = el("td");
    doc.appendChild(el("div", n.duplicates && n.duplicates.length ? `${n.doc_id} (+${n.duplicates.length} same)` : n.doc_id, "doc"));
    doc.appendChild(el("div", n.line === null ? n.source : `${n.source}:${n.line}`, "source"));
    tr.appendChild(doc);
    tr.appendChild(el("td", `${n.token_start}+64`, "num"));
    tr.appendChild(el("td", `${n.char_start}-${n.char_end}`, "num"));
    for (const s of stages) {
      const ev = n.stages[s];
      tr.appendChild(el("td", ev && ev.rank ? "#" + ev.rank : "-", "num"));
    }
    tr.appendChild(marked(n.text, cited[n.rank] || []));
    body.appendChild(tr);
  }
}

async function ask(event) {
  event.preventDefault();
  const status = document.getElementById("status");
  const button = document.getElementById("ask");
  const question = document.getElementById("question").value;
  const body = { question };
  const k = parseInt(document.getElementById("k").value, 10);
  const hops = parseInt(document.getElementById("hops").value, 10);
  if (k) body.k = k;
  if (hops) body.hops = hops;
  status.textContent = "asking…";
  status.className = "muted";
  button.disabled = true;
  const t0 = performance.now();
  try {
    const d = await call("POST", "/v1/ask", body);
    renderAnswer(d);
    renderLatency(d);
    renderEvidence(d);
    document.getElementById("result").hidden = false;
    status.textContent = `${d.neighbours.length} neighbours in ${(performance.now() - t0).toFixed(0)} ms`;
  } catch (e) {
    status.textContent = e.message;
    status.className = "error";
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("ask-form").addEventListener("submit", ask);
  loadInfo();
});
