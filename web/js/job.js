// The job page: summary, previews (poster, thumbnail strip, GIF), the HLS ladder in hls.js
// with a rung switcher, the step timeline, errors with their stderr tail, outputs, webhooks.

import { api } from "./api.js";
import { attachPlayer } from "./player.js";
import { renderTimeline } from "./timeline.js";
import { $, basename, bytes, h, progressBar, seconds, stateBadge, when } from "./dom.js";

let current = null; // {id, job, teardown}

function previews(job) {
  const find = (re) => job.outputs.filter((o) => re.test(o.key));
  const poster = find(/\/previews\/poster\.jpg$/)[0]?.url ?? job.poster_url;
  const thumbs = find(/\/previews\/thumb_\d+\.jpg$/).sort((a, b) => a.key.localeCompare(b.key));
  const gif = find(/\.gif$/)[0]?.url;
  if (!poster && !thumbs.length && !gif) return null;
  return h(
    "section",
    { class: "card", "aria-labelledby": "previews-title" },
    h("h2", { id: "previews-title" }, "Previews"),
    h(
      "div",
      { class: "previews" },
      poster && h("figure", {}, h("img", { id: "poster", src: poster, alt: "Poster frame" }), h("figcaption", {}, "Poster")),
      gif && h("figure", {}, h("img", { id: "gif", src: gif, alt: "Animated preview" }), h("figcaption", {}, "GIF")),
    ),
    thumbs.length > 0 &&
      h(
        "div",
        { class: "thumbs", id: "thumbnails", role: "list", "aria-label": "Thumbnails" },
        thumbs.map((t, i) => h("img", { src: t.url, alt: `Thumbnail ${i + 1}`, role: "listitem", loading: "lazy" })),
      ),
  );
}

function errorBlock(title, err) {
  return h(
    "div",
    { class: "errorbox" },
    h("h3", {}, title),
    h("p", {}, h("strong", {}, err.type || "error"), ": ", err.message || ""),
    h(
      "p",
      { class: "muted" },
      [
        err.step && `step ${err.step}`,
        err.worker && `worker ${err.worker}`,
        err.exit_code !== null && err.exit_code !== undefined && `exit code ${err.exit_code}`,
      ]
        .filter(Boolean)
        .join(" · "),
    ),
    err.stderr_tail && h("pre", { class: "stderr", tabindex: "0", "aria-label": "stderr tail" }, err.stderr_tail),
  );
}

function errors(job) {
  const blocks = [];
  if (job.error) blocks.push(errorBlock("Job failed", job.error));
  for (const step of job.steps) {
    if (step.error && (!job.error || step.error.message !== job.error.message)) {
      blocks.push(errorBlock(`Step ${step.name} (${step.state}, ${step.attempts} attempts)`, step.error));
    }
  }
  if (!blocks.length) return null;
  return h("section", { class: "card", id: "job-errors", "aria-labelledby": "errors-title" },
    h("h2", { id: "errors-title" }, "Errors"), ...blocks);
}

function summary(job, onAction) {
  const ended = ["succeeded", "failed", "cancelled"].includes(job.state);
  const facts = [
    ["Source", job.source ? `${job.source.bucket}/${job.source.key}` : job.key],
    ["Size", bytes(job.source?.size)],
    ["Preset", job.preset],
    ["Toolchain", job.toolchain ?? "—"],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
    ["Wall", seconds(job.wall_seconds)],
    ["CPU", seconds(job.cpu_seconds)],
  ];
  return h(
    "section",
    { class: "card" },
    h("p", {}, h("a", { href: "#/" }, "← Jobs")),
    h("div", { class: "row between" },
      h("h1", {}, "Job ", h("span", { class: "mono" }, job.id), " ", stateBadge(job.state)),
      h("div", { class: "row" },
        !ended && h("button", { type: "button", onclick: () => onAction("cancel") }, "Cancel"),
        ["failed", "cancelled"].includes(job.state) &&
          h("button", { type: "button", onclick: () => onAction("retry") }, "Retry"),
      ),
    ),
    progressBar(job.progress, "job progress"),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  );
}

function playerSection() {
  return h(
    "section",
    { class: "card", "aria-labelledby": "player-title" },
    h("div", { class: "row between" },
      h("h2", { id: "player-title" }, "Player"),
      h("label", { class: "inline" }, "Rung ", h("select", { id: "rung-select" }, h("option", { value: "-1" }, "Auto"))),
    ),
    h("video", { id: "player", controls: true, muted: true, playsInline: true, preload: "auto" }),
    h("p", { id: "rung-current", class: "muted", role: "status" }),
    h("p", { id: "player-error", class: "error", role: "alert" }),
  );
}

function outputs(job) {
  if (!job.outputs.length) return null;
  return h(
    "section",
    { class: "card", "aria-labelledby": "outputs-title" },
    h("h2", { id: "outputs-title" }, "Outputs"),
    h("details", {},
      h("summary", {}, `${job.outputs.length} files, ${bytes(job.outputs.reduce((n, o) => n + (o.size || 0), 0))}`),
      h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "File"), h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "Size"))),
      h("tbody", {}, job.outputs.map((o) =>
        h("tr", {},
          h("td", { class: "mono" }, o.url ? h("a", { href: o.url }, o.key.split("/").slice(2).join("/") || basename(o.key)) : o.key),
          h("td", {}, o.kind),
          h("td", {}, bytes(o.size))))))),
  );
}

function webhooks(job) {
  if (!job.webhooks?.length) return null;
  return h(
    "section",
    { class: "card", "aria-labelledby": "webhooks-title" },
    h("h2", { id: "webhooks-title" }, "Webhooks"),
    h("ul", {}, job.webhooks.map((d) =>
      h("li", {}, `${d.event} → ${d.url}: ${d.state} after ${d.attempts} attempt(s)`,
        d.last_status ? ` (HTTP ${d.last_status})` : "", d.last_error ? ` — ${d.last_error}` : ""))),
  );
}

function render(job, reload) {
  const page = $("#job-page");
  const onAction = async (action) => {
    try {
      await api(`/v1/jobs/${encodeURIComponent(job.id)}/${action}`, { method: "POST" });
    } catch (err) {
      alert(`${action} failed: ${err.message}`);
    }
    reload();
  };
  const timeline = h("section", { class: "card", "aria-labelledby": "timeline-title" },
    h("h2", { id: "timeline-title" }, "Steps"),
    h("div", { id: "timeline" }, renderTimeline(job.steps)));
  const slot = (name, node) => h("div", { "data-slot": name }, node ?? "");

  // Signed URLs change on every answer (new expiry): compare the object, not the signature.
  const path = (url) => (url ? new URL(url, location.href).pathname : null);
  if (current?.id === job.id && job.hls_url && path(current.job.hls_url) === path(job.hls_url)) {
    // A live refresh: every slot but the playing video's is replaced in place.
    const parts = { summary: summary(job, onAction), previews: previews(job), timeline, errors: errors(job), outputs: outputs(job), webhooks: webhooks(job) };
    for (const [name, node] of Object.entries(parts)) page.querySelector(`[data-slot="${name}"]`).replaceChildren(node ?? "");
    current.job = job;
    return;
  }
  current?.teardown?.();
  page.replaceChildren(
    slot("summary", summary(job, onAction)),
    slot("previews", previews(job)),
    slot("player", job.hls_url ? playerSection() : null),
    slot("timeline", timeline),
    slot("errors", errors(job)),
    slot("outputs", outputs(job)),
    slot("webhooks", webhooks(job)),
  );
  current = { id: job.id, job, teardown: null };
  if (job.hls_url) {
    current.teardown = attachPlayer($("#player"), $("#rung-select"), $("#rung-current"), job.hls_url, (message) => {
      $("#player-error").textContent = message;
    });
  }
}

export async function showJob(id) {
  const load = async () => {
    const job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
    if (location.hash === `#/jobs/${id}`) render(job, load);
    return job;
  };
  if (current?.id !== id) {
    current?.teardown?.();
    current = null;
    $("#job-page").replaceChildren(h("p", { class: "muted" }, "Loading…"));
  }
  await load();
}

/** A job event: refresh the open job page if it is about this job (at most every second). */
let pending = null;
export function jobEvent(summaryEvent) {
  if (!current || current.id !== summaryEvent.id || $("#job-page").hidden) return;
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    if (current?.id === summaryEvent.id) showJob(summaryEvent.id).catch(() => {});
  }, 1000);
}

export function leaveJob() {
  current?.teardown?.();
  current = null;
}
