// The step timeline: one Gantt bar per step from started_at to finished_at (or now, while it
// runs), on a shared time axis, so the parallel chunk encodes show up as overlapping bars.

import { h, seconds } from "./dom.js";

const time = (iso) => (iso ? Date.parse(iso) : Number.NaN);

export function renderTimeline(steps, now = Date.now()) {
  const started = steps.filter((s) => !Number.isNaN(time(s.started_at)));
  if (!started.length) return h("p", { class: "muted" }, "No step has started yet.");
  const t0 = Math.min(...started.map((s) => time(s.started_at)));
  const t1 = Math.max(
    ...started.map((s) => (Number.isNaN(time(s.finished_at)) ? now : time(s.finished_at))),
  );
  const span = Math.max(t1 - t0, 1);
  const ordered = [...steps].sort((a, b) => {
    const sa = time(a.started_at);
    const sb = time(b.started_at);
    if (Number.isNaN(sa) !== Number.isNaN(sb)) return Number.isNaN(sa) ? 1 : -1;
    return (sa - sb) || String(a.name).localeCompare(String(b.name));
  });

  const rows = ordered.map((step) => {
    const s = time(step.started_at);
    const e = Number.isNaN(time(step.finished_at)) ? now : time(step.finished_at);
    const track = h("div", { class: "track" });
    if (!Number.isNaN(s)) {
      const left = (100 * (s - t0)) / span;
      const width = Math.max((100 * (e - s)) / span, 0.6);
      const took = (e - s) / 1000;
      const detail = [
        `${step.name} (${step.lane})`,
        `${step.state}, ${seconds(took)}`,
        `starts +${seconds((s - t0) / 1000)}`,
        step.attempts > 1 ? `${step.attempts} attempts` : null,
        step.worker ? `on ${step.worker}` : null,
      ].filter(Boolean);
      track.append(
        h("div", {
          class: `bar state-${step.state}`,
          style: { left: `${left}%`, width: `${Math.min(width, 100 - left)}%` },
          title: detail.join(" · "),
          role: "img",
          "aria-label": detail.join(", "),
          "data-step": step.name,
        }),
      );
    }
    return h(
      "div",
      { class: "gantt-row" },
      h("span", { class: "gantt-label mono", title: step.name }, step.name),
      track,
      h("span", { class: "gantt-time" }, Number.isNaN(s) ? step.state : seconds((e - s) / 1000)),
    );
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
    h("span", { style: { left: `${f * 100}%` } }, seconds((f * span) / 1000)),
  );
  return h(
    "div",
    { class: "gantt" },
    ...rows,
    h("div", { class: "gantt-row axis", "aria-hidden": "true" }, h("span"), h("div", { class: "ticks" }, ...ticks), h("span")),
  );
}
