/*
 * The HTTP client for Shipyard's JSON API.
 *
 * Owns: fetch with the session cookie (the access token, set by the server when
 * the page was opened with ?token=…), and turning every failure into an
 * ApiError whose message is a sentence a user can act on (the server's
 * {"detail": …} or a "could not be reached" note). A 401 is reported to the
 * handler set with onUnauthorized(), so this module needs no UI of its own.
 */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

let unauthorized = () => {};
/** Call fn(detail) whenever the server answers 401 (the header shows a banner). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError("The Shipyard server could not be reached. Is it still running?", 0);
  }
  let data = null;
  try {
    data = await res.json();
  } catch (err) {
    data = null;
  }
  if (!res.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `${res.status} ${res.statusText}`;
    if (res.status === 401) unauthorized(detail);
    throw new ApiError(detail, res.status);
  }
  return data;
}
