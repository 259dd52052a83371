// The dashboard's entry: the API key gate, hash routing between pages, and live updates.

import { api, forgetKey, getKey, onUnauthorized, setKey } from "./api.js";
import { $ } from "./dom.js";
import { watchJobs } from "./events.js";
import { jobEvent, leaveJob, showJob } from "./job.js";
import { refresh, setupJobs, showJobs, upsert } from "./jobs.js";
import { showMetrics } from "./metrics.js";
import { showRollouts } from "./rollouts.js";
import { setupUpload } from "./upload.js";

const PAGES = ["key-page", "jobs-page", "job-page", "metrics-page", "rollouts-page"];
let stopWatching = null;

function showPage(id) {
  for (const page of PAGES) $(`#${page}`).hidden = page !== id;
  const nav = { "jobs-page": "jobs", "job-page": "jobs", "metrics-page": "metrics", "rollouts-page": "rollouts" }[id];
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function pageError(err) {
  const banner = $("#page-error");
  if (!err) {
    banner.hidden = true;
    return;
  }
  banner.textContent = err.message || String(err);
  banner.hidden = false;
}

async function route() {
  if (!getKey()) return;
  pageError(null);
  const hash = location.hash || "#/";
  const job = hash.match(/^#\/jobs\/([^/?#]+)$/);
  if (!job) leaveJob();
  try {
    if (job) {
      showPage("job-page");
      await showJob(decodeURIComponent(job[1]));
    } else if (hash === "#/metrics") {
      showPage("metrics-page");
      await showMetrics();
    } else if (hash === "#/rollouts") {
      showPage("rollouts-page");
      await showRollouts();
    } else {
      showPage("jobs-page");
      await showJobs();
    }
  } catch (err) {
    pageError(err);
  }
}

function signedOut(message = "") {
  stopWatching?.();
  stopWatching = null;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  $("#key-error").textContent = message;
  showPage("key-page");
  $("#key-input").focus();
}

function signedIn(me) {
  $("#key-name").textContent = `${me.name} (${me.scopes.join(", ")})`;
  $("#nav").hidden = false;
  $("#who").hidden = false;
  stopWatching?.();
  stopWatching = watchJobs({
    onJob(summary) {
      upsert(summary);
      jobEvent(summary);
    },
    async onPoll() {
      if (!$("#jobs-page").hidden) await refresh();
      const open = location.hash.match(/^#\/jobs\/([^/?#]+)$/);
      if (open && !$("#job-page").hidden) await showJob(decodeURIComponent(open[1]));
    },
    onMode(mode) {
      const badge = $("#live-mode");
      badge.textContent = mode === "live" ? "● live" : "◌ polling";
      badge.dataset.mode = mode;
    },
  });
  route();
}

async function checkKey(key) {
  return api("/v1/me", { key });
}

$("#key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("#key-input").value.trim();
  $("#key-error").textContent = "";
  if (!key) return;
  try {
    const me = await checkKey(key);
    setKey(key);
    $("#key-input").value = "";
    signedIn(me);
  } catch (err) {
    $("#key-error").textContent = err.status === 401 ? "This key was not accepted." : `Cannot check the key: ${err.message}`;
  }
});

$("#key-forget").addEventListener("click", () => {
  forgetKey();
  signedOut();
});

onUnauthorized(() => {
  forgetKey();
  signedOut("The key is no longer accepted; enter another.");
});

setupJobs(pageError);
setupUpload({ onJob: upsert });
window.addEventListener("hashchange", route);

(async () => {
  const key = getKey();
  if (!key) return signedOut();
  try {
    signedIn(await checkKey(key));
  } catch (err) {
    if (err.status === 401) {
      forgetKey();
      signedOut("The saved key is no longer accepted; enter another.");
    } else signedOut(`Cannot reach the API: ${err.message}`);
  }
})();
