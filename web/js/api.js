// The API client: every call carries the key from localStorage as a Bearer token.

const KEY_STORAGE = "vodforge.apiKey";

export function getKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  localStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  localStorage.removeItem(KEY_STORAGE);
}

export function authHeaders(key = getKey()) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** An API answer that was not 2xx: the contract's {"error": {"code", "message"}} body. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Turn a non-2xx body (JSON error or anything else) into an ApiError. */
export function errorFrom(status, text, statusText = "") {
  let code = `http_${status}`;
  let message = statusText || `HTTP ${status}`;
  try {
    const body = JSON.parse(text);
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? (typeof body?.detail === "string" ? body.detail : message);
  } catch {
    if (text && text.length < 200) message = text;
  }
  return new ApiError(status, code, message);
}

const listeners = new Set();

/** Called with the ApiError whenever the server answers 401 (the key was revoked). */
export function onUnauthorized(fn) {
  listeners.add(fn);
}

export async function api(path, { method = "GET", body, key, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders(key) };
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network", `cannot reach the server (${err.message})`);
  }
  if (!res.ok) {
    const error = errorFrom(res.status, await res.text(), res.statusText);
    if (res.status === 401 && key === undefined) for (const fn of listeners) fn(error);
    throw error;
  }
  return res.status === 204 ? null : res.json();
}
