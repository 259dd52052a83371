// The metrics page: GET /v1/stats drawn with uPlot (jobs per minute, failure rate) and a bar
// chart of p95 step durations per toolchain, with the numbers in a table beside it.

import uPlot from "../vendor/uPlot.esm.js";
import { api } from "./api.js";
import { $, h, seconds, stateBadge } from "./dom.js";

let plots = [];
let hours = 24;

/** `t` as unix seconds: the API may send ISO strings or epoch seconds. */
function unix(t) {
  if (typeof t === "number") return t > 1e12 ? t / 1000 : t;
  return Date.parse(t) / 1000;
}

function timePlot(target, label, xs, ys, { bars = false, percent = false, color }) {
  const width = Math.max(target.clientWidth || 600, 300);
  const series = {
    label,
    stroke: color,
    fill: `${color}33`,
    width: bars ? 0 : 2,
    value: (_u, v) => (v === null ? "—" : percent ? `${(v * 100).toFixed(1)}%` : String(v)),
  };
  if (bars) {
    series.paths = uPlot.paths.bars({ size: [0.8, 24] });
    series.points = { show: false };
  }
  // The whole window on the x axis: the API sends only the buckets that have jobs.
  const to = Date.now() / 1000;
  const opts = {
    width,
    height: 220,
    series: [{}, series],
    axes: [{}, { values: (_u, ticks) => ticks.map((v) => (percent ? `${Math.round(v * 100)}%` : v)) }],
    scales: {
      x: { time: true, range: () => [to - hours * 3600, to] },
      y: percent ? { range: [0, 1] } : { range: (_u, _min, max) => [0, Math.max(1, max)] },
    },
  };
  const plot = new uPlot(opts, [xs, ys], target);
  plots.push(plot);
}

function p95Chart(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No finished steps in this window.");
  const max = Math.max(...rows.map((r) => r.p95_seconds), 0.001);
  const toolchains = [...new Set(rows.map((r) => r.toolchain))];
  const steps = [...new Set(rows.map((r) => r.step))].sort();
  const legend = h("ul", { class: "legend" }, toolchains.map((t, i) =>
    h("li", {}, h("span", { class: `swatch tc-${i % 6}` }), h("span", { class: "mono" }, t))));
  const groups = steps.map((step) =>
    h("div", { class: "p95-group" },
      h("span", { class: "mono p95-step" }, step),
      h("div", { class: "p95-bars" }, toolchains.map((t, i) => {
        const row = rows.find((r) => r.step === step && r.toolchain === t);
        if (!row) return null;
        return h("div", { class: "p95-line" },
          h("div", { class: `p95-bar tc-${i % 6}`, style: { width: `${(100 * row.p95_seconds) / max}%` }, title: `${t}: p95 ${seconds(row.p95_seconds)} over ${row.n} steps` }),
          h("span", { class: "p95-value" }, `${seconds(row.p95_seconds)} (n=${row.n})`));
      }))));
  return h("div", { class: "p95" }, legend, ...groups);
}

async function draw() {
  const page = $("#metrics-page");
  const stats = await api(`/v1/stats?hours=${hours}`);
  for (const p of plots) p.destroy();
  plots = [];
  const select = h("select", { id: "metrics-hours", onchange: (ev) => { hours = Number(ev.target.value); draw().catch(showError); } },
    [1, 6, 24, 72, 168].map((n) => h("option", { value: String(n), selected: n === hours }, n < 48 ? `last ${n} h` : `last ${n / 24} days`)));
  const byState = Object.entries(stats.by_state ?? {});
  const jobsPlot = h("div", { class: "plot", id: "plot-jobs" });
  const failPlot = h("div", { class: "plot", id: "plot-failures" });
  page.replaceChildren(
    h("section", { class: "card" },
      h("div", { class: "row between" }, h("h1", {}, "Metrics"), h("label", { class: "inline" }, "Window ", select)),
      h("p", { class: "states" }, byState.length ? byState.map(([state, n]) => h("span", { class: "count" }, stateBadge(state), ` ${n}`)) : "No jobs yet.")),
    h("section", { class: "card" }, h("h2", {}, "Jobs per minute"), jobsPlot),
    h("section", { class: "card" }, h("h2", {}, "Failure rate (per hour of finishing)"), failPlot),
    h("section", { class: "card" }, h("h2", {}, "p95 step duration per toolchain"), p95Chart(stats.step_p95 ?? [])),
  );
  const jpm = stats.jobs_per_minute ?? [];
  const fr = stats.failure_rate ?? [];
  if (jpm.length) timePlot(jobsPlot, "jobs/min", jpm.map((p) => unix(p.t)), jpm.map((p) => p.count), { bars: true, color: "#2563eb" });
  else jobsPlot.append(h("p", { class: "muted" }, "No jobs in this window."));
  if (fr.length) timePlot(failPlot, "failure rate", fr.map((p) => unix(p.t)), fr.map((p) => p.rate), { percent: true, color: "#dc2626" });
  else failPlot.append(h("p", { class: "muted" }, "No finished jobs in this window."));
}

function showError(err) {
  $("#metrics-page").replaceChildren(h("p", { class: "error" }, `Cannot load stats: ${err.message}`));
}

export async function showMetrics() {
  await draw();
}

window.addEventListener("resize", () => {
  for (const p of plots) p.setSize({ width: Math.max(p.root.parentElement.clientWidth, 300), height: 220 });
});
