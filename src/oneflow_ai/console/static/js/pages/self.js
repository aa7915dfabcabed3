// Self-service: one key's own view. Its status and expiry, the models it may use, its rate
// limits with what is used of each window now, the budgets that count its requests, the
// credits it can spend, its usage over time and its own request log.
import { get } from "../api.js";
import { stackedBars } from "../charts.js";
import { fmt, h, meter, panel, replace, table } from "../dom.js";
import { can, session } from "../session.js";
import { apiFilters, buckets, range, stackSeries } from "../usage.js";
import { budgetColumns } from "./billing.js";
import { totalsTiles } from "./overview.js";
import { requestLog } from "./requests.js";

const WINDOWS = { requests_per_minute: "requests per minute", requests_per_hour: "requests per hour", tokens_per_minute: "tokens per minute" };

export default {
  name: "self",
  title: "My key",
  allowed: () => can("self") && (session.principal.self_only || session.principal.key_id !== null),
  async render(main, { params }) {
    const days = { ...params, from: params.from || new Date(Date.now() - 30 * 86400_000).toISOString(), bucket: "day" };
    const filters = { ...apiFilters(days), scope: "self" };
    const [me, usage, daily] = await Promise.all([
      get("/api/v1/self"),
      get("/api/v1/usage", filters),
      get("/api/v1/usage", { ...filters, group_by: "model,day" }),
    ]);
    const key = me.key;
    const limits = me.unlimited
      ? h("p", { text: "This key is exempt from rate limits." })
      : table([
        { label: "Limit", value: (w) => WINDOWS[w.name] || w.name },
        { label: "Used now", value: (w) => meter(w.used, w.limit, `${fmt.int(w.used)} of ${fmt.int(w.limit)}`) },
        { label: "Frees up in", num: true, value: (w) => (w.used ? `${fmt.num(w.reset_seconds)} s` : "–") },
      ], me.limits, { empty: "No rate limit applies." });
    const credits = me.credits.mode === "prepaid"
      ? `${fmt.credits(me.credits.available.credits)} credits available in the project's prepaid balance`
      : "Postpaid: charges are billed to the project afterwards.";
    const chart = h("div", { class: "chart" });
    const log = h("div");
    replace(main,
      h("h1", { text: key ? `Key ${key.name}` : "My usage" }),
      key ? panel(null, h("dl", { class: "facts" },
        ...[["Prefix", key.prefix], ["Project", key.project_id], ["Role", key.role], ["Status", key.status],
          ["Expires", key.expires_at ? fmt.time(key.expires_at) : "never"], ["Models", key.allowed_models ? key.allowed_models.join(", ") : "all"],
          ["Credits", credits]].map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]))) : null,
      panel("Rate limits", limits),
      panel("Budgets", table(budgetColumns, me.budgets, { empty: "No budget caps this key." })),
      h("h2", { text: "Last 30 days" }),
      totalsTiles(usage.totals),
      panel("Credits per day by model", chart),
      panel("My requests", log));
    const { start } = range(days);
    const { times, labels } = buckets({ ...days, from: start.toISOString() }, "day");
    stackedBars(chart, { times, series: stackSeries(daily.groups, "model", "day", labels, (g) => g.credits), format: fmt.credits, label: "Credits per day by model" });
    await requestLog(log, { filters: { scope: "self", from: new Date(Date.now() - 30 * 86400_000).toISOString() }, scope: "self", showKey: false, nameKey: (id) => id });
  },
};
