// The ragkit web UI: ask (streamed over Server-Sent Events), open a citation inside its document,
// filter by metadata, upload files to ingest. No build step, no dependencies. Every piece of text
// from the server is inserted as text (never as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "ragkit-api-key";
let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";

function authHeaders(extra = {}) {
  return apiKey ? { ...extra, Authorization: "Bearer " + apiKey } : extra;
}

function askForKey() {
  const entered = window.prompt("This server needs an API key:");
  if (entered === null) return false;
  apiKey = entered.trim();
  sessionStorage.setItem(KEY_STORAGE, apiKey);
  $("key-button").hidden = false;
  return true;
}

// fetch with the API key; asks for the key once on 401. Errors become Error(message from the server).
async function api(path, options = {}, retried = false) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (response.status === 401 && !retried && askForKey()) return api(path, options, true);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.message || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// --- index status and filter hints ---

async function refreshStatus() {
  try {
    const status = await (await api("/v1/status")).json();
    $("index-status").textContent =
      `${status.documents} documents · ${status.chunks} chunks · generation ${status.generation}`;
    const hints = $("filter-fields");
    hints.replaceChildren();
    const fields = Object.keys(status.filter_fields || {}).sort();
    if (fields.length) {
      hints.append("Filterable: ");
      fields.forEach((field, i) => {
        const code = document.createElement("code");
        code.textContent = field;
        code.title = "insert into the filter";
        code.addEventListener("click", () => {
          $("filter").value = JSON.stringify({ [field]: "" });
          $("filter").focus();
        });
        hints.append(code, i < fields.length - 1 ? " " : "");
      });
    }
  } catch (err) {
    $("index-status").textContent = err.message;
  }
}

// --- asking, with the answer streamed ---

// Server-Sent Events from a fetch body: yields {event, data} as each event completes.
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary;
    while ((boundary = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

function readFilter() {
  const raw = $("filter").value.trim();
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch (_) {
    throw new Error("filter: not valid JSON, e.g. {\"source\": \"data/planets/mars.md\"}");
  }
}

async function ask(event) {
  event.preventDefault();
  showError("");
  const answerEl = $("answer");
  const button = $("ask-button");
  let body;
  try {
    body = { question: $("question").value, stream: true, filter: readFilter() };
  } catch (err) {
    showError(err.message);
    return;
  }
  const topK = $("top-k").value.trim();
  if (topK) body.top_k = Number(topK);
  $("answer-box").hidden = false;
  answerEl.replaceChildren();
  answerEl.dataset.deltas = "0";
  answerEl.dataset.state = "streaming";
  $("sources").replaceChildren();
  $("sources-title").hidden = true;
  $("warnings").replaceChildren();
  button.disabled = true;
  try {
    const response = await api("/v1/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    for await (const { event: kind, data } of readEvents(response)) {
      const payload = JSON.parse(data);
      if (kind === "delta") {
        answerEl.append(payload.text);
        answerEl.dataset.deltas = String(Number(answerEl.dataset.deltas) + 1);
      } else if (kind === "answer") {
        renderAnswer(payload);
      } else if (kind === "error") {
        throw new Error(payload.message);
      }
    }
  } catch (err) {
    showError(err.message);
    answerEl.dataset.state = "failed";
  } finally {
    button.disabled = false;
    if (answerEl.dataset.state === "streaming") answerEl.dataset.state = "incomplete";
  }
}

function pageLabel(page, pages) {
  if (Array.isArray(pages) && pages.length > 1) return `, pages ${pages[0]}-${pages[pages.length - 1]}`;
  return page ? `, page ${page}` : "";
}

function citationLink(citation) {
  const link = document.createElement("a");
  link.className = "cite";
  link.href = "#";
  link.textContent = `[${citation.n}]`;
  link.dataset.n = String(citation.n);
  link.dataset.chunkId = citation.chunk_id;
  link.title = `${citation.source} (chars ${citation.start}-${citation.end})`;
  link.addEventListener("click", (e) => {
    e.preventDefault();
    openCitation(citation, link);
  });
  return link;
}

// The final answer: [n] markers become links to their passages; Sources and warnings below.
function renderAnswer(payload) {
  const answerEl = $("answer");
  const byNumber = new Map(payload.citations.map((c) => [c.n, c]));
  answerEl.replaceChildren();
  const pattern = /\[(\d+)\]/g;
  let last = 0;
  for (const match of payload.answer.matchAll(pattern)) {
    answerEl.append(payload.answer.slice(last, match.index));
    const citation = byNumber.get(Number(match[1]));
    answerEl.append(citation ? citationLink(citation) : match[0]);
    last = match.index + match[0].length;
  }
  answerEl.append(payload.answer.slice(last));
  answerEl.dataset.state = "done";

  $("sources-title").hidden = payload.citations.length === 0;
  for (const citation of payload.citations) {
    const item = document.createElement("li");
    item.append(citationLink(citation), ` ${citation.source} (chars ${citation.start}-${citation.end})`);
    $("sources").append(item);
  }
  for (const warning of payload.trace.warnings) {
    const item = document.createElement("li");
    item.textContent = "warning: " + warning;
    $("warnings").append(item);
  }
}

// --- the citation viewer: the passage highlighted inside its document ---

async function openCitation(citation, link) {
  document.querySelectorAll("a.cite.active").forEach((a) => a.classList.remove("active"));
  link.classList.add("active");
  showError("");
  try {
    const passage = await (await api("/v1/chunks/" + encodeURIComponent(citation.chunk_id))).json();
    const doc = passage.document;
    const start = passage.start - doc.offset;
    const end = passage.end - doc.offset;
    const meta = $("viewer-meta");
    meta.textContent =
      `[${citation.n}] ${passage.source}${pageLabel(passage.page, passage.pages)} · ` +
      `characters ${passage.start}–${passage.end} of ${doc.length}` +
      (doc.offset ? ` (showing from character ${doc.offset})` : "");
    meta.dataset.source = passage.source;
    meta.dataset.start = String(passage.start);
    meta.dataset.end = String(passage.end);
    const mark = document.createElement("mark");
    mark.id = "passage";
    mark.textContent = doc.text.slice(start, end);
    $("viewer-text").replaceChildren(doc.text.slice(0, start), mark, doc.text.slice(end));
    $("viewer").hidden = false;
    // Scroll the document pane (not the page) so the passage sits near its top third.
    const pane = $("viewer-text");
    pane.scrollTop += mark.getBoundingClientRect().top - pane.getBoundingClientRect().top - pane.clientHeight / 3;
  } catch (err) {
    showError(err.message);
  }
}

// --- upload: progress of the upload, then of the ingest job ---

function setProgress(value, label) {
  const bar = $("upload-progress");
  bar.hidden = false;
  if (value === null) bar.removeAttribute("value");
  else bar.value = value;
  $("upload-status").textContent = label;
}

function upload(event) {
  event.preventDefault();
  const files = $("files").files;
  if (!files.length) {
    $("upload-status").textContent = "Choose one or more files first.";
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/ingest");
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress((50 * e.loaded) / e.total, `Uploading… ${Math.round((100 * e.loaded) / e.total)}%`);
  };
  xhr.onerror = () => finishUpload("Upload failed: the server did not answer.");
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 401 && askForKey()) return upload(event);
    if (xhr.status !== 202) return finishUpload(`Upload failed: ${body.message || "HTTP " + xhr.status}`);
    setProgress(50, "Uploaded; indexing…");
    pollJob(body.id);
  };
  $("upload-button").disabled = true;
  $("upload-status").dataset.done = "false";
  setProgress(0, "Uploading…");
  xhr.send(form);
}

async function pollJob(jobId) {
  try {
    const job = await (await api("/v1/jobs/" + encodeURIComponent(jobId))).json();
    if (job.state === "succeeded") {
      const r = job.report;
      setProgress(100, `Done: ${r.files_ok} file(s) indexed, ${r.files_failed.length} failed; ` +
        `${r.chunks_added} chunks added (generation ${r.generation}).`);
      for (const failure of r.files_failed) $("upload-status").append(` ${failure.path}: ${failure.reason}.`);
      finishUpload(null);
      refreshStatus();
      return;
    }
    if (job.state === "failed") return finishUpload(`Ingest failed: ${job.error.message}`);
    const p = job.progress || {};
    const label = p.task ? `Indexing: ${p.task}${p.total ? ` ${p.done}/${p.total}` : ` (${p.done})`}` : "Queued…";
    setProgress(p.fraction === null || p.fraction === undefined ? 50 : 50 + 50 * p.fraction, label);
    setTimeout(() => pollJob(jobId), 250);
  } catch (err) {
    finishUpload(`Ingest status unavailable: ${err.message}`);
  }
}

function finishUpload(message) {
  $("upload-button").disabled = false;
  if (message) $("upload-status").textContent = message;
  $("upload-status").dataset.done = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask-form").addEventListener("submit", ask);
  $("upload-form").addEventListener("submit", upload);
  $("key-button").hidden = !apiKey;
  $("key-button").addEventListener("click", () => { askForKey(); refreshStatus(); });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
  });
  refreshStatus();
});
