// Live job updates: GET /v1/events read with fetch streaming (so the key travels in the
// Authorization header, never in the URL), parsed by eventsource-parser. When the stream
// cannot be opened or drops, poll instead for a while, then try the stream again.

import { createParser } from "../vendor/eventsource-parser.js";
import { authHeaders } from "./api.js";

const POLL_MS = 3000;
const POLLS_BEFORE_RETRY = 5;

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Start watching. `onJob(summary)` per `event: job`; `onPoll()` is awaited every few seconds
 * while the stream is down; `onMode("live" | "polling")` says which is in use.
 * Returns a function that stops everything.
 */
export function watchJobs({ onJob, onPoll, onMode }) {
  const stop = new AbortController();

  async function stream() {
    const res = await fetch("/v1/events", {
      headers: { Accept: "text/event-stream", ...authHeaders() },
      cache: "no-store",
      signal: stop.signal,
    });
    if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
    onMode("live");
    const parser = createParser({
      onEvent(event) {
        if (event.event !== "job") return;
        try {
          onJob(JSON.parse(event.data));
        } catch (err) {
          console.warn("events: bad job event", err);
        }
      },
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  }

  (async () => {
    while (!stop.signal.aborted) {
      try {
        await stream();
      } catch (err) {
        if (stop.signal.aborted) return;
        console.info("events stream unavailable, polling", err.message);
      }
      onMode("polling");
      for (let i = 0; i < POLLS_BEFORE_RETRY && !stop.signal.aborted; i++) {
        try {
          await onPoll();
        } catch (err) {
          console.info("poll failed", err.message);
        }
        await sleep(POLL_MS, stop.signal);
      }
    }
  })();

  return () => stop.abort();
}
