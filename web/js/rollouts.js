// The rollouts page: GET /v1/rollouts — each canary's step, traffic weight, candidate vs
// stable counts and rates, and its decision log. "No rollouts" when there are none (or the
// server has no rollout routes yet: 404).

import { ApiError, api } from "./api.js";
import { $, h, seconds, when } from "./dom.js";

const pct = (v) => (v === null || v === undefined ? "—" : `${(Number(v) * 100).toFixed(1)}%`);

function counts(rollout) {
  const side = (name) => rollout.counts?.[name] ?? {};
  const rows = [
    ["Jobs", (c) => c.jobs ?? 0],
    ["Failed", (c) => c.failed ?? 0],
    ["Failure rate", (c) => pct(c.failure_rate)],
    ["p95", (c) => seconds(c.p95_seconds)],
  ];
  return h("table", { class: "table compact" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), h("th", { scope: "col" }, "Candidate"), h("th", { scope: "col" }, "Stable"))),
    h("tbody", {}, rows.map(([label, f]) =>
      h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, f(side("candidate"))), h("td", {}, f(side("stable")))))));
}

function stepsBar(rollout) {
  return h("ol", { class: "steps", "aria-label": "Rollout steps" }, (rollout.steps ?? []).map((w, i) =>
    h("li", { class: i < rollout.step_index ? "done" : i === rollout.step_index ? "current" : "", "aria-current": i === rollout.step_index ? "step" : null }, `${w}%`)));
}

function decisions(rollout) {
  const list = rollout.decisions ?? [];
  if (!list.length) return h("p", { class: "muted" }, "No decisions yet.");
  return h("table", { class: "table compact decisions" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Action"), h("th", { scope: "col" }, "Weight"), h("th", { scope: "col" }, "Reason"))),
    h("tbody", {}, list.map((d) => h("tr", {},
      h("td", {}, when(d.at)),
      h("td", {}, h("span", { class: `action action-${d.action}` }, d.action)),
      h("td", {}, d.weight_percent === undefined ? "—" : `${d.weight_percent}%`),
      h("td", {}, d.reason ?? "")))));
}

function card(rollout) {
  return h("article", { class: "card rollout", "data-rollout-id": rollout.id },
    h("div", { class: "row between" },
      h("h2", {}, h("span", { class: "mono" }, rollout.candidate), " vs ", h("span", { class: "mono" }, rollout.stable)),
      h("span", { class: `state-badge rollout-${rollout.state}` }, rollout.state)),
    h("p", {}, `Step ${Number(rollout.step_index) + 1} of ${(rollout.steps ?? []).length}, candidate weight `,
      h("strong", {}, `${rollout.weight_percent}%`), ` · started ${when(rollout.started_at)}`,
      rollout.ended_at ? ` · ended ${when(rollout.ended_at)}` : ""),
    h("meter", { min: 0, max: 100, value: rollout.weight_percent, "aria-label": "candidate weight" }),
    rollout.min_jobs !== undefined &&
      h("p", { class: "muted" }, `Policy: at least ${rollout.min_jobs} candidate jobs per step, failure rate ≤ ${pct(rollout.max_failure_rate)}, p95 at most ${pct(rollout.max_p95_regression)} over stable.`),
    stepsBar(rollout),
    h("div", { class: "split" },
      h("div", {}, h("h3", {}, "Counts"), counts(rollout)),
      h("div", {}, h("h3", {}, "Decision log"), decisions(rollout))));
}

export async function showRollouts() {
  const page = $("#rollouts-page");
  let items = [];
  try {
    items = (await api("/v1/rollouts")).items ?? [];
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
  }
  page.replaceChildren(
    h("section", { class: "card" }, h("h1", {}, "Rollouts"),
      items.length ? null : h("p", { class: "muted", id: "rollouts-empty" }, "No rollouts.")),
    ...items.map(card),
  );
}
