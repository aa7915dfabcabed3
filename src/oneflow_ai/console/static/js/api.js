// Calls to the gateway's JSON API with the session's credential; an expired access token is
// renewed once and the call retried. Errors carry the API's status, code and message.
import { renew, session } from "./session.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.param = body?.error?.param;
  }
}

let onSignedOut = () => {};
export function whenSignedOut(handler) { onSignedOut = handler; }

export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function send(path, { method = "GET", body, params } = {}) {
  const headers = {};
  const credential = session.credential();
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(url(path, params), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

export async function call(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && (await renew())) response = await send(path, options);
  if (response.status === 401) {
    onSignedOut("Your session has ended: sign in again.");
    throw new ApiError(401, await response.json().catch(() => null));
  }
  if (options.raw) {
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    return response;
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path, params) => call(path, { params });
export const post = (path, body) => call(path, { method: "POST", body: body ?? {} });
export const put = (path, body) => call(path, { method: "PUT", body });
export const patch = (path, body) => call(path, { method: "PATCH", body });
export const del = (path) => call(path, { method: "DELETE" });

// Download what `path` answers as a file (a CSV export): fetched with the session's
// credential, handed to the browser as a blob.
export async function download(path, params, filename) {
  const response = await call(path, { params, raw: true });
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
