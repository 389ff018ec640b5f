// The run page: the tree of /api/runs/<id> (the `progress --json` tree, whose
// progress the server computes by the CLI's rules), each run's custom events,
// and a timeline. /api/runs/<id>/events (server-sent events) says when
// something happened: each event re-reads the tree, until the stream's final
// `end`. Without that stream the page polls until every root run has ended.

import {
  HttpError,
  ROOT,
  apiUrl,
  formatDuration,
  formatJSON,
  formatTime,
  getJSON,
  h,
  progressView,
  replaceChildren,
  runDurationMs,
  runHref,
  setLive,
  showProblem,
  statusBadge,
  timeElement,
  treeProgress,
} from "./common.js";

const id = decodeURIComponent(location.pathname.slice(`${ROOT}runs/`.length));
const treeUrl = apiUrl(`runs/${encodeURIComponent(id)}`);
const eventsUrl = `${treeUrl}/events`;

const REFRESH_AFTER_EVENT_MS = 100; // events in a burst share one read of the tree
const POLL_MS = 1000; // without the event stream
const SAFETY_POLL_MS = 5000; // with it: a run that is lost may say nothing
const MAX_EVENTS_SHOWN = 500;
const V2_EVENTS = [
  "on_chain_start", "on_chain_stream", "on_chain_end", "on_custom_event",
  "on_tool_start", "on_tool_end", "on_retriever_start", "on_retriever_end",
  "on_llm_start", "on_llm_end", "on_chat_model_start", "on_chat_model_end",
];

const summary = document.getElementById("summary");
const treeList = document.getElementById("tree");
const timeline = document.getElementById("timeline");

let tree = null;
let finished = false;
let source = null;
let timer = null;
let inFlight = false;
let again = false;
let ticker = null;
const views = new Map(); // run id -> the elements of its tree entry

// -- reading ---------------------------------------------------------------------------

function isDone(current) {
  return current.runs.length > 0 && current.runs.every((run) => run.status !== "running");
}

async function refresh() {
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  clearTimeout(timer);
  timer = null;
  let next = source ? SAFETY_POLL_MS : POLL_MS;
  try {
    const current = await getJSON(treeUrl);
    tree = current;
    showProblem("");
    render();
    if (isDone(current)) finish();
    else if (!source) setLive("live · polling", "on");
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) {
      setLive("waiting for the run to appear…", "wait");
      next = POLL_MS;
    } else if (error instanceof HttpError && error.status === 400) {
      showProblem(error.message);
      setLive("not a run id or trace id", "off");
      stop();
      return;
    } else {
      showProblem(`cannot read the run: ${error.message}`);
      setLive("server unreachable · retrying", "off");
      next = POLL_MS * 2;
    }
  } finally {
    inFlight = false;
  }
  if (finished) return;
  if (again) {
    again = false;
    refresh();
  } else {
    timer = setTimeout(refresh, next);
  }
}

function refreshSoon() {
  if (finished) return;
  clearTimeout(timer);
  timer = setTimeout(refresh, REFRESH_AFTER_EVENT_MS);
}

function connect() {
  if (typeof EventSource === "undefined") return;
  source = new EventSource(eventsUrl);
  source.onopen = () => setLive("live", "on");
  source.onmessage = refreshSoon;
  for (const name of V2_EVENTS) source.addEventListener(name, refreshSoon);
  source.addEventListener("end", () => {
    closeSource();
    refresh();
  });
  source.onerror = () => {
    if (!source) return;
    if (source.readyState === EventSource.CLOSED) {
      // the server refused the stream (or has none): poll instead
      closeSource();
      refreshSoon();
    } else {
      setLive("reconnecting…", "wait");
    }
  };
}

function closeSource() {
  if (source) source.close();
  source = null;
}

function stop() {
  closeSource();
  clearTimeout(timer);
  clearInterval(ticker);
  timer = null;
  ticker = null;
}

function finish() {
  finished = true;
  stop();
  const statuses = new Set(tree.runs.map((run) => run.status));
  if (statuses.has("lost")) setLive("lost: its process died before it ended", "lost");
  else if (statuses.has("error")) setLive("ended with an error", "error");
  else setLive("ended", "done");
  render();
}

// -- the tree ----------------------------------------------------------------------------

function labels(node) {
  const tags = (node.tags || []).map((tag) => h("span", { className: "chip tag" }, tag));
  const metadata = Object.entries(node.metadata || {}).map(([key, value]) =>
    h("span", { className: "chip meta" }, `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`),
  );
  return tags.length || metadata.length ? h("div", { className: "labels" }, tags, metadata) : null;
}

function durationElement(node) {
  return h("span", { className: "duration", dataset: { runId: node.run_id } }, formatDuration(runDurationMs(node)));
}

function headOf(node) {
  const name =
    node.run_id === id
      ? h("span", { className: "run-name" }, node.name)
      : h("a", { className: "run-name", href: runHref(node.run_id) }, node.name);
  const parts = [statusBadge(node.status), " ", name, h("span", { className: "muted run-type" }, node.run_type), durationElement(node)];
  if (node.progress) parts.push(progressView(node.progress));
  else if (node.events && node.events.length) {
    parts.push(h("span", { className: "muted" }, `last event: ${node.events[node.events.length - 1].name}`));
  }
  const lines = [h("div", { className: "run-line" }, parts)];
  if (node.status === "error" && node.status_message) {
    lines.push(h("p", { className: "error-message" }, node.status_message));
  } else if (node.status === "lost") {
    lines.push(
      h("p", { className: "lost-message" }, node.status_message || "lost: the process running it died before the run ended"),
    );
  }
  lines.push(labels(node));
  return lines;
}

function eventKey(event) {
  return `${event.time_ns}\u0000${event.name}`;
}

function eventItem(event, node) {
  const offset = typeof event.time_ns === "number" ? (event.time_ns - node.start_ns) / 1e6 : null;
  return h(
    "li",
    { className: "event" },
    h(
      "div",
      { className: "event-head" },
      timeElement(event.time, event.time_ns, false),
      offset === null ? null : h("span", { className: "muted offset" }, `+${formatDuration(offset)}`),
      h("span", { className: "event-name" }, event.name),
    ),
    h("pre", { className: "json" }, formatJSON(event.data)),
  );
}

function updateEvents(view, node) {
  const all = node.events || [];
  const events = all.slice(-MAX_EVENTS_SHOWN);
  const keys = events.map(eventKey);
  const same = view.eventKeys.length <= keys.length && view.eventKeys.every((key, index) => key === keys[index]);
  if (same) {
    for (const event of events.slice(view.eventKeys.length)) view.eventList.append(eventItem(event, node));
  } else {
    replaceChildren(view.eventList, events.map((event) => eventItem(event, node)));
  }
  view.eventKeys = keys;
  view.eventCount.textContent =
    all.length > events.length
      ? `custom events: the latest ${events.length} of ${all.length} (otel-runnables events ${node.run_id} lists all)`
      : `custom events (${all.length})`;
  view.events.hidden = all.length === 0;
}

function viewOf(node) {
  let view = views.get(node.run_id);
  if (!view) {
    const head = h("div", { className: "run-head" });
    const eventCount = h("summary", {});
    const eventList = h("ol", { className: "events" });
    const events = h("details", { className: "run-events", open: true }, eventCount, eventList);
    const children = h("ul", { className: "tree" });
    const item = h("li", { className: "run", dataset: { runId: node.run_id } }, head, events, children);
    view = { item, head, headKey: "", events, eventCount, eventList, eventKeys: [], children, childIds: "" };
    views.set(node.run_id, view);
  }
  // everything in the head except the duration, which the ticker updates
  const headKey = JSON.stringify([
    node.status, node.name, node.run_type, node.progress, node.status_message, node.tags, node.metadata,
    node.progress ? null : (node.events || []).length, node.end_ns,
  ]);
  if (headKey !== view.headKey) {
    replaceChildren(view.head, headOf(node));
    view.headKey = headKey;
  } else {
    const duration = view.head.querySelector(".duration");
    if (duration) duration.textContent = formatDuration(runDurationMs(node));
  }
  updateEvents(view, node);
  const children = node.children || [];
  const childIds = children.map((child) => child.run_id).join(" ");
  const childItems = children.map((child) => viewOf(child).item);
  if (childIds !== view.childIds) {
    replaceChildren(view.children, childItems);
    view.childIds = childIds;
  }
  view.item.dataset.status = node.status;
  return view;
}

function renderTree() {
  const ids = tree.runs.map((run) => run.run_id).join(" ");
  const items = tree.runs.map((run) => viewOf(run).item);
  if (treeList.dataset.ids !== ids) {
    replaceChildren(treeList, items);
    treeList.dataset.ids = ids;
  }
}

// -- the summary ---------------------------------------------------------------------------

function renderSummary() {
  const roots = tree.runs;
  const single = roots.length === 1 ? roots[0] : null;
  const title = single ? single.name : `trace ${tree.trace_id}`;
  document.title = `${title} · otel-runnables`;
  const start = Math.min(...roots.map((run) => run.start_ns));
  const overall = single ? treeProgress(single) : null;
  const facts = [
    ["status", roots.map((run) => statusBadge(run.status))],
    single ? ["run id", h("code", {}, single.run_id)] : null,
    [
      "trace id",
      single && single.run_id === id
        ? h("a", { href: runHref(tree.trace_id), title: "the whole trace" }, h("code", {}, tree.trace_id))
        : h("code", {}, tree.trace_id),
    ],
    ["started", timeElement(single ? single.start : null, start)],
    single ? ["duration", durationElement(single)] : null,
    overall ? ["progress", progressView(overall.progress)] : null,
  ].filter(Boolean);
  replaceChildren(
    summary,
    h("h1", {}, title),
    h("dl", { className: "facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
  );
}

// -- the timeline --------------------------------------------------------------------------

function flatten(nodes, depth = 0, out = []) {
  for (const node of nodes) {
    out.push({ node, depth });
    flatten(node.children || [], depth + 1, out);
  }
  return out;
}

function preview(data) {
  const text = JSON.stringify(data) ?? "";
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function renderTimeline() {
  const rows = flatten(tree.runs);
  if (rows.length === 0) {
    replaceChildren(timeline);
    return;
  }
  const now = Date.now() * 1e6;
  const t0 = Math.min(...rows.map(({ node }) => node.start_ns));
  const t1 = Math.max(...rows.map(({ node }) => node.end_ns ?? now), t0 + 1e6);
  const span = t1 - t0;
  const at = (ns) => `${Math.max(0, Math.min(100, ((ns - t0) / span) * 100))}%`;

  const axis = h("div", { className: "tl-row tl-axis" }, h("div", { className: "tl-label" }), h("div", { className: "tl-track" }));
  for (const fraction of [0, 0.25, 0.5, 0.75, 1]) {
    const tick = h("span", { className: "tl-tick" }, formatDuration((span * fraction) / 1e6));
    tick.style.left = `${fraction * 100}%`;
    axis.lastChild.append(tick);
  }
  const lines = rows.map(({ node, depth }) => {
    const label = h("div", { className: "tl-label", title: node.name }, node.name);
    label.style.paddingLeft = `${depth * 0.9}em`;
    const bar = h("div", {
      className: `tl-bar status-${["running", "ok", "error", "lost"].includes(node.status) ? node.status : "other"}`,
      title: `${node.name} · ${node.status} · ${formatDuration(runDurationMs(node))}`,
    });
    bar.style.left = at(node.start_ns);
    bar.style.width = `${(((node.end_ns ?? now) - node.start_ns) / span) * 100}%`;
    const markers = (node.events || []).slice(-MAX_EVENTS_SHOWN).map((event) => {
      const marker = h("span", {
        className: "tl-marker",
        title: `${event.name} · ${formatTime(event.time_ns, false)} · ${preview(event.data)}`,
      });
      marker.style.left = at(event.time_ns);
      return marker;
    });
    return h("div", { className: "tl-row", dataset: { runId: node.run_id } }, label, h("div", { className: "tl-track" }, bar, markers));
  });
  replaceChildren(timeline, axis, lines);
}

function render() {
  if (!tree) return;
  renderSummary();
  renderTree();
  renderTimeline();
}

// Durations and the timeline move on while runs are still going.
function tick() {
  if (!tree || finished) return;
  for (const element of document.querySelectorAll(".duration")) {
    const node = findNode(element.dataset.runId);
    if (node) element.textContent = formatDuration(runDurationMs(node));
  }
  renderTimeline();
}

function findNode(runId) {
  const stack = [...(tree ? tree.runs : [])];
  while (stack.length) {
    const node = stack.pop();
    if (node.run_id === runId) return node;
    stack.push(...(node.children || []));
  }
  return null;
}

setLive("connecting…", "wait");
connect();
refresh();
ticker = setInterval(tick, 1000);
