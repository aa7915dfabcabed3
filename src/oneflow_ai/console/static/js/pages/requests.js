// The request log: one row per request, newest first, filtered through the URL, more rows by
// cursor; a row opens its details (route, attempts, errors; stored bodies for admins).
import { download, get } from "../api.js";
import { badge, field, fmt, formValues, h, replace, select, statusBadge, sumDecimals, table } from "../dom.js";
import { keyNamer, loadKeys, loadModels, loadProjects } from "../lookups.js";
import { can } from "../session.js";
import { apiFilters, range } from "../usage.js";

const PAGE = 50;

function filterForm(params, { onApply, models, keys, projects }) {
  const { start, end } = range(params);
  const local = (d) => new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const form = h("form", { class: "filters", "aria-label": "Filters" },
    field("From", h("input", { type: "datetime-local", name: "from", value: local(start) })),
    field("To", h("input", { type: "datetime-local", name: "to", value: local(end) })),
    projects.length ? field("Project", select("project", [["", "all projects"], ...projects.map((p) => [p.id, p.name])], params.project)) : null,
    field("Model", select("model", [["", "any model"], ...models.map((m) => [m, m])], params.model)),
    field("Status", select("status", [["", "any"], ["ok", "ok"], ["error", "errors"]], params.status)),
    keys.length ? field("Key", select("key", [["", "any key"], ...keys.map((k) => [k.id, k.name])], params.key)) : null,
    h("button", { class: "primary", type: "submit", text: "Apply" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = formValues(form);
    for (const name of ["from", "to"]) if (values[name]) values[name] = new Date(values[name]).toISOString();
    onApply(values);
  });
  return form;
}

function tokens(row) {
  const parts = [`${fmt.int(row.input_tokens)} in`, `${fmt.int(row.output_tokens)} out`];
  if (row.cached_input_tokens) parts.push(`${fmt.int(row.cached_input_tokens)} cached`);
  const written = (row.cache_write_5m_tokens || 0) + (row.cache_write_1h_tokens || 0);
  if (written) parts.push(`${fmt.int(written)} cache writes`);
  if (row.reasoning_tokens) parts.push(`${fmt.int(row.reasoning_tokens)} reasoning`);
  if (row.images) parts.push(`${row.images} images`);
  if (row.characters) parts.push(`${fmt.int(row.characters)} chars`);
  return parts.join(" · ");
}

function columns(nameKey, open, { showKey }) {
  return [
    { label: "Time", value: (r) => h("button", { type: "button", class: "link", text: fmt.time(r.time), "aria-label": `Details of request ${r.id}`, onclick: () => open(r.id) }) },
    showKey ? { label: "Key", value: (r) => nameKey(r.key_id) } : null,
    showKey ? { label: "Project", value: (r) => r.project_id } : null,
    { label: "Model asked → answered", value: (r) => `${r.model_requested ?? "–"} → ${r.model ?? "–"}` },
    { label: "Strategy", value: (r) => [r.strategy ?? "", r.route_reason ? ` (${r.route_reason})` : ""].join("") || "–" },
    { label: "Fallbacks", num: true, value: (r) => String(r.fallbacks) },
    { label: "Status", value: (r) => h("span", {}, statusBadge(r.status), r.error ? ` ${r.error}` : "") },
    { label: "Tokens", value: tokens },
    { label: "Credits", num: true, value: (r) => fmt.credits(r.credits) },
    { label: "Latency", num: true, value: (r) => fmt.ms(r.latency_ms) },
    { label: "TTFT", num: true, value: (r) => fmt.ms(r.ttft_ms) },
    { label: "Request id", value: (r) => h("span", { class: "mono", text: r.id }) },
  ].filter(Boolean);
}

function details(row, scope) {
  const route = row.route;
  const facts = [
    ["Request id", row.id], ["Time", fmt.time(row.time)], ["Project", row.project_id], ["Key", row.key_id],
    ["User", row.user_id], ["Model asked", row.model_requested], ["Model answered", `${row.model} (${row.provider})`],
    ["Strategy", route.strategy], ["Route reason", route.reason], ["Candidates", route.candidates.join(" → ")],
    ["Fallbacks", route.fallbacks], ["Status", `${row.status}${row.error ? ` ${row.error}` : ""}`],
    ["Tokens", tokens(row)], ["Credits", `${fmt.credits(row.credits)} (${fmt.usd(row.usd)})`],
    ["Price table", row.price_table_version], ["Estimated usage", row.estimated ? "yes" : "no"],
    ["Latency / TTFT", `${fmt.ms(row.latency_ms)} / ${fmt.ms(row.ttft_ms)}`], ["Stream", row.stream ? "yes" : "no"],
  ];
  const body = [
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v ?? "–" })])),
    h("h3", { text: "Attempts" }),
    table([
      { label: "Model", value: (a) => a.model },
      { label: "Provider", value: (a) => a.provider },
      { label: "Latency", num: true, value: (a) => fmt.ms(a.latency_ms) },
      { label: "Error", value: (a) => (a.error ? badge(`${a.error}${a.status ? ` ${a.status}` : ""}`, "bad") : badge("answered", "ok")) },
      { label: "Message", wrap: true, value: (a) => a.message ?? "" },
    ], route.attempts, { empty: "No upstream call was made (refused before any)." }),
  ];
  if (scope !== "self" && "bodies" in row) {
    body.push(h("h3", { text: "Prompt and answer" }));
    if (row.bodies) {
      body.push(h("pre", { class: "body", text: JSON.stringify(row.bodies.request, null, 2) }));
      body.push(h("pre", { class: "body", text: JSON.stringify(row.bodies.response, null, 2) }));
    } else {
      body.push(h("p", { class: "muted", text: "Not stored: the project does not keep bodies (or they have expired)." }));
    }
  }
  return body;
}

// The log itself (also on the self-service page, with scope=self).
export async function requestLog(container, { filters, scope, showKey, nameKey }) {
  const dialog = h("dialog", { "aria-label": "Request details" });
  const open = async (id) => {
    const row = await get(`/api/v1/requests/${encodeURIComponent(id)}`, { scope });
    replace(dialog, h("div", { class: "panel-head" }, h("h2", { text: "Request details" }),
      h("button", { type: "button", text: "Close", onclick: () => dialog.close() })), details(row, scope));
    dialog.showModal();
  };
  const rows = [];
  const holder = h("div");
  const summary = h("p", { class: "muted small", "aria-live": "polite" });
  const more = h("button", { type: "button", text: "Load more" });
  let cursor = null;
  const load = async () => {
    more.disabled = true;
    const page = await get("/api/v1/requests", { ...filters, scope, limit: PAGE, cursor });
    rows.push(...page.data);
    cursor = page.next_cursor;
    replace(holder, table(columns(nameKey, open, { showKey }), rows, { empty: "No requests match." }));
    const credits = sumDecimals(rows.map((r) => r.credits));
    summary.textContent = `${rows.length} request${rows.length === 1 ? "" : "s"} shown · ${fmt.credits(credits)} credits`;
    more.hidden = !cursor;
    more.disabled = false;
  };
  more.addEventListener("click", load);
  const csv = h("button", { type: "button", text: "CSV of this page", onclick: () => download("/api/v1/requests", { ...filters, scope, limit: PAGE, format: "csv" }, "requests.csv") });
  replace(container, h("div", { class: "panel-head" }, summary, csv), holder, more, dialog);
  await load();
}

export default {
  name: "requests",
  title: "Requests",
  allowed: () => can("usage"),
  async render(main, { params, setParams }) {
    const [keys, models, projects] = await Promise.all([loadKeys(params.project), loadModels(), can("system") ? loadProjects() : []]);
    const log = h("section", { class: "panel" });
    replace(main, h("h1", { text: "Requests" }), filterForm(params, { onApply: setParams, models, keys, projects }), log);
    const filters = { ...apiFilters(params), status: params.status };
    await requestLog(log, { filters, showKey: true, nameKey: keyNamer(keys) });
  },
};
