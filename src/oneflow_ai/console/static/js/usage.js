// Turning /api/v1/usage reports into chart series and table rows, and the filter form the
// analytics pages share (its values round-trip through the page's URL).
import { field, formValues, h, select } from "./dom.js";

export const DIMENSIONS = ["model", "provider", "project", "key"];
const HOUR = 3600;
const DAY = 86400;
const TOP = 7;

// The report's time range: the URL's, else the last 24 hours (to the next whole hour).
export function range(params) {
  const now = new Date();
  const end = params.to ? new Date(params.to) : new Date(Math.ceil(now / (HOUR * 1000)) * HOUR * 1000);
  const start = params.from ? new Date(params.from) : new Date(end - DAY * 1000);
  return { start, end };
}

// What /api/v1/usage (and /api/v1/requests) take from the page's parameters.
export function apiFilters(params) {
  const { start, end } = range(params);
  const filters = { from: start.toISOString(), to: end.toISOString() };
  for (const name of ["project", "model", "provider", "key"]) if (params[name]) filters[name] = params[name];
  if (params.scope) filters.scope = params.scope;
  return filters;
}

export function bucketOf(params) {
  if (params.bucket === "hour" || params.bucket === "day") return params.bucket;
  const { start, end } = range(params);
  return end - start > 3 * DAY * 1000 ? "day" : "hour";
}

// Bucket starts (unix seconds) covering [start, end), and each bucket's label as the API gives
// it (hours: 2026-12-06T17:00:00Z, days: 2026-12-06).
export function buckets(params, bucket) {
  const { start, end } = range(params);
  const step = bucket === "hour" ? HOUR : DAY;
  const first = Math.floor(start / 1000 / step) * step;
  const times = [];
  const labels = [];
  for (let t = first; t < end / 1000; t += step) {
    times.push(t);
    const iso = new Date(t * 1000).toISOString();
    labels.push(bucket === "hour" ? `${iso.slice(0, 13)}:00:00Z` : iso.slice(0, 10));
  }
  return { times, labels };
}

// Stacked series of `metric` per value of `dimension` over the buckets: the largest TOP by
// total, the rest as "other".
export function stackSeries(groups, dimension, bucket, labels, metric, nameOf = (v) => v ?? "none") {
  const index = new Map(labels.map((label, i) => [label, i]));
  const byValue = new Map();
  for (const group of groups) {
    const at = index.get(group[bucket]);
    if (at === undefined) continue;
    const key = group[dimension] ?? "";
    if (!byValue.has(key)) byValue.set(key, { values: labels.map(() => 0), total: 0 });
    const entry = byValue.get(key);
    const value = Number(metric(group)) || 0;
    entry.values[at] += value;
    entry.total += value;
  }
  const ranked = [...byValue.entries()].sort((a, b) => b[1].total - a[1].total);
  const series = ranked.slice(0, TOP).map(([key, entry]) => ({ label: nameOf(key || null), values: entry.values }));
  if (ranked.length > TOP) {
    const rest = labels.map((_, i) => ranked.slice(TOP).reduce((sum, [, e]) => sum + e.values[i], 0));
    series.push({ label: "other", values: rest });
  }
  return series;
}

// The filter form: range, bucket, stack-by and the exact-match filters the caller may use.
export function filterForm(params, { onApply, projects = [], models = [], keys = [], stack = true, admin = false }) {
  const { start, end } = range(params);
  const local = (d) => new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const form = h("form", { class: "filters", "aria-label": "Filters" },
    field("From", h("input", { type: "datetime-local", name: "from", value: local(start) })),
    field("To", h("input", { type: "datetime-local", name: "to", value: local(end) })),
    field("Buckets", select("bucket", [["", "auto"], ["hour", "hours"], ["day", "days"]], params.bucket)),
    stack ? field("Stack by", select("by", DIMENSIONS.map((d) => [d, d]), params.by || "model")) : null,
    admin ? field("Project", select("project", [["", "all projects"], ...projects.map((p) => [p.id, p.name])], params.project)) : null,
    field("Model", select("model", [["", "any model"], ...models.map((m) => [m, m])], params.model)),
    field("Provider", select("provider", [["", "any provider"], ...["openai", "anthropic", "stability", "elevenlabs"].map((p) => [p, p])], params.provider)),
    keys.length ? field("Key", select("key", [["", "any key"], ...keys.map((k) => [k.id, `${k.name} (${k.prefix})`])], params.key)) : null,
    h("button", { class: "primary", type: "submit", text: "Apply" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = formValues(form);
    for (const name of ["from", "to"]) if (values[name]) values[name] = new Date(values[name]).toISOString();
    onApply(values);
  });
  return form;
}

export function seconds(label) {
  return Date.parse(label.length === 10 ? `${label}T00:00:00Z` : label) / 1000;
}
