// The HLS player: hls.js on a <video> (native HLS where MSE is missing, e.g. iOS Safari) and
// a rung switcher: Auto (ABR) or one fixed level.

import Hls from "../vendor/hls.mjs";
import { h } from "./dom.js";

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

  // hls_url is a signed prefix URL (/v1/signed/<exp>/<sig>/outputs/<job>/hls/master.m3u8):
  // the signature is in the path, so the playlists' relative references (variant playlists,
  // segments) resolve to signed URLs too, and no request needs the API key.
  const hls = new Hls();
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
