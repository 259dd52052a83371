// The HLS player: hls.js on a <video> (native HLS where MSE is missing, e.g. iOS Safari) and
// a rung switcher: Auto (ABR) or one fixed level.

import Hls from "../vendor/hls.mjs";
import { authHeaders } from "./api.js";
import { h } from "./dom.js";

/** Same-origin requests (the API's own object URLs) also carry the key; a signed URL on
 * another origin (S3) must not: an Authorization header there breaks its signature. */
function sameOrigin(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

function rungLabel(level) {
  const kbps = Math.round((level.bitrate || 0) / 1000);
  return `${level.height ? `${level.height}p` : level.name || "?"} · ${kbps} kbps`;
}

/**
 * Play `hlsUrl` in `video`; fill `select` with the rungs. `status` gets the level playing.
 * Returns a function that tears the player down.
 */
export function attachPlayer(video, select, status, hlsUrl, onError) {
  if (!Hls.isSupported()) {
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = hlsUrl;
      select.replaceChildren(h("option", { value: "-1" }, "Auto (native player)"));
      select.disabled = true;
      return () => video.removeAttribute("src");
    }
    onError("This browser cannot play HLS (no Media Source Extensions).");
    return () => {};
  }

  const hls = new Hls({
    xhrSetup(xhr, url) {
      if (!sameOrigin(url)) return;
      xhr.open("GET", url, true);
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    },
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
    const options = [h("option", { value: "-1" }, "Auto")];
    // Highest first, as a viewer reads a quality menu.
    const order = data.levels.map((level, index) => ({ level, index }));
    order.sort((a, b) => (b.level.height || 0) - (a.level.height || 0));
    for (const { level, index } of order) {
      options.push(h("option", { value: String(index) }, rungLabel(level)));
    }
    select.replaceChildren(...options);
    select.disabled = data.levels.length < 2;
    video.dataset.levels = String(data.levels.length);
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
    const level = hls.levels[data.level];
    video.dataset.level = String(data.level);
    status.textContent = level ? `playing ${rungLabel(level)}` : "";
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (data.fatal) {
      onError(`Playback failed: ${data.type} ${data.details}`);
      hls.destroy();
    }
  });
  select.addEventListener("change", () => {
    // currentLevel: switch now (flushes the buffer); -1 gives the choice back to ABR.
    hls.currentLevel = Number(select.value);
  });
  hls.loadSource(hlsUrl);
  hls.attachMedia(video);
  return () => hls.destroy();
}
