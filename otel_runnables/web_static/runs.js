// The recent runs page: the `runs --json` rows from /api/runs, polled while
// the page is visible, filtered by name and status; runs still going show
// the progress of their tree (from /api/runs/<id>, the `progress --json` tree).

import {
  apiUrl,
  formatDuration,
  getJSON,
  h,
  replaceChildren,
  progressView,
  runDurationMs,
  runHref,
  setLive,
  showProblem,
  statusBadge,
  timeElement,
  treeProgress,
} from "./common.js";

const POLL_MS = 1500;
const MAX_TREES_PER_POLL = 20;

const nameInput = document.getElementById("filter-name");
const statusSelect = document.getElementById("filter-status");
const lastSelect = document.getElementById("filter-last");
const body = document.querySelector("#runs tbody");
const empty = document.getElementById("empty");

let rows = [];
let loaded = false;
const progressByRun = new Map(); // run id -> treeProgress(), for runs seen running
let timer = null;
let inFlight = false;
let again = false; // a poll was asked for while one was in flight

function readFilters() {
  const query = new URLSearchParams(location.search);
  nameInput.value = query.get("name") || "";
  statusSelect.value = query.get("status") || "";
  const last = query.get("last");
  if (last && [...lastSelect.options].some((option) => option.value === last)) lastSelect.value = last;
}

function writeFilters() {
  const query = new URLSearchParams();
  if (nameInput.value) query.set("name", nameInput.value);
  if (statusSelect.value) query.set("status", statusSelect.value);
  if (lastSelect.value !== "50") query.set("last", lastSelect.value);
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

function matches(row) {
  const name = nameInput.value.trim().toLowerCase();
  if (name && !String(row.name).toLowerCase().includes(name)) return false;
  return !statusSelect.value || row.status === statusSelect.value;
}

function progressCell(row) {
  const found = progressByRun.get(row.run_id);
  if (!found) return h("td", { className: "progress-cell" });
  const from = found.run.run_id === row.run_id ? null : h("span", { className: "muted" }, ` ${found.run.name}`);
  return h("td", { className: "progress-cell" }, progressView(found.progress), from);
}

function render() {
  const shown = rows.filter(matches);
  replaceChildren(
    body,
    shown.map((row) =>
      h(
        "tr",
        { dataset: { runId: row.run_id, status: row.status } },
        h("td", { className: "name" }, h("a", { href: runHref(row.run_id) }, row.name)),
        h("td", {}, statusBadge(row.status)),
        progressCell(row),
        h("td", { className: "number" }, formatDuration(runDurationMs(row))),
        h("td", {}, timeElement(row.start, row.start_ns)),
        h(
          "td",
          { className: "id" },
          h("a", { href: runHref(row.trace_id), title: `trace ${row.trace_id}` }, String(row.trace_id).slice(0, 8)),
        ),
      ),
    ),
  );
  empty.hidden = !loaded || shown.length > 0;
  if (rows.length === 0) empty.textContent = "no runs yet: run a job (or `otel-runnables demo`) and it shows here";
  else empty.textContent = `none of the last ${rows.length} runs match the filters`;
}

async function refreshProgress(running) {
  await Promise.all(
    running.slice(0, MAX_TREES_PER_POLL).map(async (row) => {
      try {
        const tree = await getJSON(apiUrl(`runs/${encodeURIComponent(row.run_id)}`));
        const root = (tree.runs || [])[0];
        if (root) {
          const found = treeProgress(root);
          if (found) progressByRun.set(row.run_id, found);
        }
      } catch {
        // the list still shows; the next poll tries again
      }
    }),
  );
}

async function poll() {
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  clearTimeout(timer);
  timer = null;
  try {
    rows = await getJSON(apiUrl(`runs?last=${encodeURIComponent(lastSelect.value)}`));
    loaded = true;
    await refreshProgress(rows.filter((row) => row.status === "running"));
    const known = new Set(rows.map((row) => row.run_id));
    for (const id of progressByRun.keys()) if (!known.has(id)) progressByRun.delete(id);
    showProblem("");
    setLive(`live · updated ${new Date().toLocaleTimeString()}`, "on");
  } catch (error) {
    showProblem(`cannot read runs: ${error.message}`);
    setLive("server unreachable · retrying", "off");
  } finally {
    inFlight = false;
  }
  render();
  if (again) {
    again = false;
    poll();
  } else {
    schedule();
  }
}

function schedule() {
  if (timer === null && document.visibilityState === "visible") timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && timer === null && !inFlight) poll();
});
document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
for (const input of [nameInput, statusSelect]) {
  input.addEventListener("input", () => {
    writeFilters();
    render();
  });
}
lastSelect.addEventListener("change", () => {
  writeFilters();
  poll();
});

readFilters();
poll();
