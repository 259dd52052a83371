// The job list: GET /v1/jobs (filter by state, search by id or file, load more by cursor),
// kept current by job events (or polling) through `upsert`.

import { api } from "./api.js";
import { $, basename, elapsed, h, progressBar, seconds, stateBadge, when } from "./dom.js";

const jobs = new Map(); // id -> JobSummary
let nextCursor = null;

function stateFilter() {
  return $("#state-filter").value;
}

function matches(job) {
  const state = stateFilter();
  if (state && job.state !== state) return false;
  const text = $("#text-filter").value.trim().toLowerCase();
  return !text || job.id.toLowerCase().includes(text) || String(job.key).toLowerCase().includes(text);
}

function row(job) {
  const took = elapsed(job.started_at, job.finished_at);
  return h(
    "tr",
    { "data-job-id": job.id, "data-state": job.state },
    h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono" }, job.id)),
    h("td", { title: job.key }, basename(job.key)),
    h("td", {}, job.preset),
    h("td", {}, stateBadge(job.state)),
    h("td", {}, progressBar(job.progress, `progress of ${job.id}`)),
    h("td", {}, when(job.created_at)),
    h("td", {}, took === null ? "—" : seconds(took)),
  );
}

function render() {
  const body = $("#jobs-table tbody");
  const shown = [...jobs.values()]
    .filter(matches)
    .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  body.replaceChildren(...shown.map(row));
  $("#jobs-empty").hidden = shown.length > 0;
  $("#jobs-more").hidden = !nextCursor;
}

/** A job summary from an event, a poll or an upload: update its row or add it. */
export function upsert(job) {
  const known = jobs.get(job.id);
  // Events can overtake each other; never move a finished job back.
  if (known && known.finished_at && !job.finished_at) return;
  jobs.set(job.id, { ...known, ...job });
  if ($("#jobs-page").hidden) return;
  const body = $("#jobs-table tbody");
  const old = body.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
  if (old && matches(job)) old.replaceWith(row(jobs.get(job.id)));
  else render();
}

/** (Re)load the first page for the current state filter. */
export async function refresh() {
  const params = new URLSearchParams({ limit: "50" });
  if (stateFilter()) params.set("state", stateFilter());
  const page = await api(`/v1/jobs?${params}`);
  jobs.clear();
  for (const job of page.items) jobs.set(job.id, job);
  nextCursor = page.next_cursor;
  render();
}

async function more() {
  if (!nextCursor) return;
  const params = new URLSearchParams({ limit: "50", cursor: nextCursor });
  if (stateFilter()) params.set("state", stateFilter());
  const page = await api(`/v1/jobs?${params}`);
  for (const job of page.items) jobs.set(job.id, job);
  nextCursor = page.next_cursor;
  render();
}

export function setupJobs(onError) {
  $("#state-filter").addEventListener("change", () => refresh().catch(onError));
  $("#text-filter").addEventListener("input", render);
  $("#jobs-filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("#jobs-more").addEventListener("click", () => more().catch(onError));
}

export async function showJobs() {
  await refresh();
}
