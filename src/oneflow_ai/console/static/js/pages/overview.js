// Analytics: credits and requests over time stacked by model, provider, project or key; token
// classes; latency and rates per model; top keys and models by spend. Every chart and table
// has its data as CSV: the same /api/v1/usage query with format=csv.
import { download, get } from "../api.js";
import { stackedBars } from "../charts.js";
import { fmt, h, panel, replace, table, tile } from "../dom.js";
import { keyNamer, loadKeys, loadModels, loadProjects } from "../lookups.js";
import { can } from "../session.js";
import { apiFilters, bucketOf, buckets, filterForm, stackSeries } from "../usage.js";

const DIMENSION_NAMES = { model: "model", provider: "provider", project: "project", key: "key" };

function csvButton(filters, groupBy, name) {
  return h("button", {
    type: "button",
    class: "small",
    text: "CSV",
    "aria-label": `Download ${name} as CSV`,
    dataset: { csv: groupBy || "totals" },
    onclick: () => download("/api/v1/usage", { ...filters, group_by: groupBy, format: "csv" }, `usage-${groupBy || "totals"}.csv`.replace(",", "-")),
  });
}

function chartPanel(title, filters, groupBy, draw) {
  const holder = h("div", { class: "chart" });
  const section = h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", { text: title }), csvButton(filters, groupBy, title)), holder);
  return { section, draw: () => draw(holder) };
}

export function totalsTiles(totals) {
  return h("div", { class: "tiles", "aria-label": "Totals" },
    tile("Requests", fmt.int(totals.requests)),
    tile("Credits", fmt.credits(totals.credits)),
    tile("USD", fmt.usd(totals.usd)),
    tile("Errors", fmt.pct(totals.errors, totals.requests)),
    tile("Fallbacks", fmt.pct(totals.fallback_requests, totals.requests)),
    tile("Cache hits", fmt.pct(totals.cache_hits, totals.requests)),
    tile("Latency p50", fmt.ms(totals.latency_ms.p50)),
    tile("Latency p95", fmt.ms(totals.latency_ms.p95)));
}

export default {
  name: "",
  title: "Analytics",
  allowed: () => can("usage"),
  async render(main, { params, setParams }) {
    const by = DIMENSION_NAMES[params.by] || "model";
    const bucket = bucketOf(params);
    const filters = apiFilters(params);
    const [projects, keys, models] = await Promise.all([
      can("system") ? loadProjects() : [], loadKeys(params.project), loadModels(),
    ]);
    const [overall, stacked, tokens, perModel, perKey] = await Promise.all([
      get("/api/v1/usage", filters),
      get("/api/v1/usage", { ...filters, group_by: `${by},${bucket}` }),
      get("/api/v1/usage", { ...filters, group_by: bucket }),
      get("/api/v1/usage", { ...filters, group_by: "model" }),
      get("/api/v1/usage", { ...filters, group_by: "key" }),
    ]);
    const { times, labels } = buckets(params, bucket);
    const nameKey = keyNamer(keys);
    const name = by === "key" ? nameKey : (v) => v ?? "none";
    const credits = chartPanel(`Credits by ${by}`, filters, `${by},${bucket}`, (el) =>
      stackedBars(el, { times, series: stackSeries(stacked.groups, by, bucket, labels, (g) => g.credits, name), format: fmt.credits, label: `Credits per ${bucket} stacked by ${by}` }));
    const requests = chartPanel(`Requests by ${by}`, filters, `${by},${bucket}`, (el) =>
      stackedBars(el, { times, series: stackSeries(stacked.groups, by, bucket, labels, (g) => g.requests, name), format: fmt.int, label: `Requests per ${bucket} stacked by ${by}` }));
    const classes = [
      ["input", (g) => g.input_tokens - g.cached_input_tokens - (g.cache_write_5m_tokens || 0) - (g.cache_write_1h_tokens || 0)],
      ["cached input", (g) => g.cached_input_tokens],
      ["cache writes", (g) => (g.cache_write_5m_tokens || 0) + (g.cache_write_1h_tokens || 0)],
      ["output", (g) => g.output_tokens - g.reasoning_tokens],
      ["reasoning", (g) => g.reasoning_tokens],
    ];
    const tokenChart = chartPanel("Tokens by class", filters, bucket, (el) =>
      stackedBars(el, {
        times,
        series: classes.map(([label, metric]) => ({
          label, values: labels.map((l) => tokens.groups.filter((g) => g[bucket] === l).reduce((s, g) => s + metric(g), 0)),
        })),
        format: fmt.int,
        label: `Tokens per ${bucket} by class`,
      }));
    const modelTable = panel(null,
      h("div", { class: "panel-head" }, h("h2", { text: "Models by spend: latency and rates" }), csvButton(filters, "model", "models")),
      table([
        { label: "Model", value: (g) => g.model ?? "none" },
        { label: "Requests", num: true, value: (g) => fmt.int(g.requests) },
        { label: "Credits", num: true, value: (g) => fmt.credits(g.credits) },
        { label: "p50", num: true, value: (g) => fmt.ms(g.latency_ms.p50) },
        { label: "p95", num: true, value: (g) => fmt.ms(g.latency_ms.p95) },
        { label: "Errors", num: true, value: (g) => fmt.pct(g.errors, g.requests) },
        { label: "Fallbacks", num: true, value: (g) => fmt.pct(g.fallback_requests, g.requests) },
        { label: "Cache hits", num: true, value: (g) => fmt.pct(g.cache_hits, g.requests) },
      ], perModel.groups, { empty: "No requests in this range." }));
    const keyTable = panel(null,
      h("div", { class: "panel-head" }, h("h2", { text: "Top keys by spend" }), csvButton(filters, "key", "keys")),
      table([
        { label: "Key", value: (g) => nameKey(g.key) },
        { label: "Requests", num: true, value: (g) => fmt.int(g.requests) },
        { label: "Credits", num: true, value: (g) => fmt.credits(g.credits) },
        { label: "Tokens in / out", num: true, value: (g) => `${fmt.int(g.input_tokens)} / ${fmt.int(g.output_tokens)}` },
      ], perKey.groups.slice(0, 10), { empty: "No requests in this range." }));
    replace(main,
      h("h1", { text: "Analytics" }),
      filterForm(params, { onApply: setParams, projects, models, keys, admin: can("system") }),
      h("div", { class: "panel-head" }, h("p", { class: "muted small", text: `${fmt.time(filters.from)} – ${fmt.time(filters.to)} · latency percentiles are estimated from a histogram` }), csvButton(filters, "", "totals")),
      totalsTiles(overall.totals),
      h("div", { class: "grid" }, credits.section, requests.section),
      tokenChart.section,
      h("div", { class: "grid" }, modelTable, keyTable));
    for (const chart of [credits, requests, tokenChart]) chart.draw();
  },
};
