// The upload box: drag and drop or the file input, sent with XHR (fetch has no upload
// progress) as multipart to POST /v1/uploads; the progress bar follows the bytes sent.

import { authHeaders, errorFrom } from "./api.js";
import { $, h } from "./dom.js";

export function setupUpload({ onJob }) {
  const box = $("#upload-box");
  const input = $("#upload-input");
  const bar = $("#upload-progress");
  const status = $("#upload-status");
  let busy = false;

  function send(file) {
    if (busy) {
      status.textContent = "An upload is already running.";
      return;
    }
    busy = true;
    const form = new FormData();
    form.append("file", file, file.name);
    const preset = $("#upload-preset").value.trim();
    if (preset) form.append("preset", preset);

    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/uploads");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    bar.removeAttribute("data-done");
    status.replaceChildren(`Uploading ${file.name}…`);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) bar.value = (100 * ev.loaded) / ev.total;
    });
    xhr.addEventListener("load", () => {
      busy = false;
      input.value = "";
      if (xhr.status >= 200 && xhr.status < 300) {
        bar.value = 100;
        bar.setAttribute("data-done", "");
        const result = JSON.parse(xhr.responseText);
        const job = result.job;
        status.replaceChildren(
          `Uploaded ${file.name}: job `,
          h("a", { href: `#/jobs/${job.id}` }, job.id),
          ` (${job.state}).`,
        );
        onJob(job);
      } else {
        const err = errorFrom(xhr.status, xhr.responseText, xhr.statusText);
        bar.hidden = true;
        status.replaceChildren(h("span", { class: "error" }, `Upload failed: ${err.message}`));
      }
    });
    xhr.addEventListener("error", () => {
      busy = false;
      bar.hidden = true;
      status.replaceChildren(h("span", { class: "error" }, "Upload failed: connection lost."));
    });
    xhr.send(form);
  }

  input.addEventListener("change", () => {
    if (input.files && input.files.length) send(input.files[0]);
  });
  for (const type of ["dragenter", "dragover"]) {
    box.addEventListener(type, (ev) => {
      ev.preventDefault();
      box.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    box.addEventListener(type, (ev) => {
      ev.preventDefault();
      box.classList.remove("dragging");
    });
  }
  box.addEventListener("drop", (ev) => {
    const file = ev.dataTransfer?.files?.[0];
    if (file) send(file);
  });
}
