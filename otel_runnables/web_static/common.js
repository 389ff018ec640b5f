// Shared by the pages. Every value that comes from a span (names, tags,
// metadata, event data, error messages) reaches the page through
// textContent or a text attribute, never as markup: `h` is the only way
// the pages build elements, and it has no way to set HTML.

const TEXT_ATTRIBUTES = new Set(["title", "id", "role", "aria-label", "datetime", "max", "value"]);

// h("td", {className: "x", title: "…"}, "text", child, …)
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "open" || key === "hidden") element[key] = Boolean(value);
    else if (key === "href") element.setAttribute("href", ownPath(value));
    else if (TEXT_ATTRIBUTES.has(key)) element.setAttribute(key, String(value));
    else throw new Error(`h(): unsupported property ${key}`);
  }
  append(element, children);
  return element;
}

// Links go to this server's own routes only (no javascript: or other schemes).
function ownPath(value) {
  const path = String(value);
  if (!path.startsWith("/") || path.startsWith("//")) throw new Error(`h(): not a local path: ${path}`);
  return path;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.append(child);
    else element.append(document.createTextNode(String(child)));
  }
}

// Where the application is: "/" under `otel-runnables serve`, "/otel/" when an
// application mounts it there. This file is served at <root>static/common.js.
export const ROOT = new URL("../", import.meta.url).pathname;

// Links are built here only, to our own routes, with the id percent-encoded.
export function runHref(id) {
  return `${ROOT}runs/${encodeURIComponent(id)}`;
}

// The JSON and event-stream routes: apiUrl("runs?last=5") is <root>api/runs?last=5.
export function apiUrl(rest) {
  return `${ROOT}api/${rest}`;
}

export function replaceChildren(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

const KNOWN_STATUSES = new Set(["running", "ok", "error", "lost"]);
const ICONS = { running: "…", ok: "✓", error: "✗", lost: "⚠" };

// A status shown as text with a class from a fixed list (an unknown status is
// still shown, as text, with a neutral style).
export function statusBadge(status) {
  const known = KNOWN_STATUSES.has(status) ? status : "other";
  return h("span", { className: `status status-${known}` }, `${ICONS[known] || "?"} ${status}`);
}

export function isFinished(status) {
  return status !== "running";
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "";
  if (ms < 10) return `${Number(ms.toFixed(1))} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
}

// Duration of something that may still be going: up to now while running.
export function runDurationMs(run, nowMs = Date.now()) {
  if (typeof run.duration_ms === "number") return run.duration_ms;
  if (typeof run.start_ns === "number") return Math.max(0, nowMs - run.start_ns / 1e6);
  return null;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// Local wall-clock time; the full ISO-8601 UTC time goes in the title.
export function formatTime(ns, withDate = true) {
  if (typeof ns !== "number") return "";
  const date = new Date(ns / 1e6);
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
  if (!withDate) return time;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

export function timeElement(iso, ns, withDate = true) {
  return h("time", { datetime: iso || undefined, title: iso || undefined }, formatTime(ns, withDate));
}

// The CLI's progress text: "done/total  percent%  message".
export function progressText(progress) {
  if (!progress) return "";
  const parts = [];
  if (typeof progress.done === "number") {
    const done = formatNumber(progress.done);
    parts.push(typeof progress.total === "number" ? `${done}/${formatNumber(progress.total)}` : done);
  }
  if (typeof progress.percent === "number") parts.push(`${Math.round(progress.percent)}%`);
  if (progress.message) parts.push(String(progress.message));
  return parts.join("  ");
}

function formatNumber(value) {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

// A progress bar (when a percentage is known) and the CLI's progress text.
export function progressView(progress) {
  if (!progress) return null;
  const children = [];
  if (typeof progress.percent === "number") {
    const percent = Math.max(0, Math.min(100, progress.percent));
    children.push(h("progress", { max: 100, value: percent, "aria-label": `${Math.round(percent)}%` }));
  }
  children.push(h("span", { className: "progress-text" }, progressText(progress)));
  return h("span", { className: "progress" }, children);
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// JSON from our own API; a non-2xx answer becomes an HttpError with the server's message.
export async function getJSON(url, signal) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, signal, cache: "no-store" });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = (body && (body.error || body.message || body.detail)) || text || response.statusText;
    throw new HttpError(response.status, String(message));
  }
  return body;
}

export function setLive(text, state) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.className = `live live-${state}`;
}

export function showProblem(text) {
  const problem = document.getElementById("problem");
  problem.textContent = text || "";
  problem.hidden = !text;
}

// What a whole tree has got to: the root's own progress, else the latest
// progress of a run still going below it, else the latest of any run below.
// Returns {progress, run} (run: the node it came from) or null.
export function treeProgress(root) {
  if (root.progress) return { progress: root.progress, run: root };
  let best = null;
  const visit = (node) => {
    if (node.progress) {
      const running = node.status === "running";
      const better =
        best === null ||
        (running && !best.running) ||
        (running === best.running && node.progress.time_ns > best.progress.time_ns);
      if (better) best = { progress: node.progress, run: node, running };
    }
    for (const child of node.children || []) visit(child);
  };
  for (const child of root.children || []) visit(child);
  return best;
}

// Event data as JSON: one line when it is short, indented when it is not.
export function formatJSON(value) {
  const oneLine = inlineJSON(value);
  if (oneLine === undefined) return String(value);
  return oneLine.length <= 80 ? oneLine : JSON.stringify(value, null, 2);
}

function inlineJSON(value) {
  if (Array.isArray(value)) return `[${value.map((item) => inlineJSON(item) ?? "null").join(", ")}]`;
  if (value !== null && typeof value === "object" && typeof value.toJSON !== "function") {
    const fields = Object.entries(value)
      .map(([key, item]) => [key, inlineJSON(item)])
      .filter(([, item]) => item !== undefined)
      .map(([key, item]) => `${JSON.stringify(key)}: ${item}`);
    return `{${fields.join(", ")}}`;
  }
  return JSON.stringify(value);
}
