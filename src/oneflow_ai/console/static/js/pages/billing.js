// Credits and budgets of a project: balance, holds and what can be spent; top-ups (system
// admins); budgets and quotas with this period's use as progress bars, edited by the project's
// admins; and whether the project stores prompts and answers.
import { get, post, put } from "../api.js";
import { badge, field, fmt, formValues, h, meter, panel, replace, select, table, tile, toast } from "../dom.js";
import { loadProjects } from "../lookups.js";
import { can, session } from "../session.js";

const amount = (value) => (typeof value === "object" && value !== null ? value.credits : value);
const shown = (metric, value) => (metric === "credits" ? `${fmt.credits(amount(value))} credits` : fmt.int(value));
const number = (metric, value) => Number(metric === "credits" ? amount(value) : value);

export function budgetMeter(b) {
  const used = number(b.metric, b.used) + number(b.metric, b.reserved);
  const limit = number(b.metric, b.limit);
  return meter(used, limit, `${shown(b.metric, b.used)} used${Number(number(b.metric, b.reserved)) ? ` + ${shown(b.metric, b.reserved)} held` : ""} of ${shown(b.metric, b.limit)}`);
}

export const budgetColumns = [
  { label: "Scope", value: (b) => [b.scope, b.key_id || b.user_id || b.provider ? ` ${b.key_id || b.user_id || b.provider}` : ""].join("") },
  { label: "Budget", value: (b) => `${b.metric} per ${b.period}` },
  { label: "Mode", value: (b) => badge(b.mode, b.mode === "hard" ? "warn" : "") },
  { label: "Use", value: budgetMeter },
  { label: "Remaining", num: true, value: (b) => shown(b.metric, b.remaining) },
  { label: "Resets", value: (b) => fmt.time(b.resets_at) },
];

function budgetSpec(b) {
  const spec = { metric: b.metric, period: b.period, mode: b.mode, limit: b.metric === "credits" ? b.limit.credits : String(b.limit) };
  for (const name of ["key_id", "user_id", "provider"]) if (b[name]) spec[name] = b[name];
  return spec;
}

export default {
  name: "billing",
  title: "Billing",
  allowed: () => can("usage"),
  async render(main, { params, setParams }) {
    const again = () => this.render(main, { params, setParams });
    const project = params.project || session.principal.project_id;
    const [projects, credits, budgets, policy] = await Promise.all([
      can("system") ? loadProjects() : [],
      get(`/api/v1/projects/${project}/credits`),
      get(`/api/v1/projects/${project}/budgets`),
      get(`/api/v1/projects/${project}/request-log`),
    ]);
    const parts = [h("h1", { text: "Billing" })];
    if (projects.length) {
      parts.push(h("form", { class: "filters" }, field("Project", select("project", projects.map((p) => [p.id, p.name]), project, { onchange: (e) => setParams({ project: e.target.value }) }))));
    }
    parts.push(h("div", { class: "tiles", "aria-label": "Credits" },
      tile("Mode", credits.mode),
      tile("Balance", fmt.credits(credits.balance.credits)),
      tile("Held", fmt.credits(credits.reserved.credits)),
      tile("Available", fmt.credits(credits.available.credits))));
    if (can("system")) {
      const error = h("p", { class: "error", role: "alert" });
      const topUp = h("form", { class: "inline", "aria-label": "Top up credits" },
        field("Credits", h("input", { name: "credits", inputmode: "decimal", required: true, pattern: "[0-9]+(\\.[0-9]+)?" })),
        field("Note", h("input", { name: "note", maxlength: 500 })),
        h("button", { class: "primary", type: "submit", text: "Top up" }), error);
      topUp.addEventListener("submit", async (event) => {
        event.preventDefault();
        try { await post(`/api/v1/projects/${project}/credits`, formValues(topUp)); toast("Credits added."); again(); } catch (f) { error.textContent = f.message; }
      });
      parts.push(panel("Top up", topUp));
    }
    const editable = can("budgets:write");
    const columns = [...budgetColumns];
    if (editable) {
      columns.push({ label: "", value: (b) => h("button", {
        type: "button", class: "danger", text: "Remove", "aria-label": `Remove the ${b.metric} budget per ${b.period}`,
        onclick: async () => {
          try { await put(`/api/v1/projects/${project}/budgets`, { budgets: budgets.data.filter((x) => x.id !== b.id).map(budgetSpec) }); again(); } catch (f) { toast(f.message, "bad"); }
        },
      }) });
    }
    parts.push(panel("Budgets and quotas", table(columns, budgets.data, { empty: "No budgets: nothing caps this project's spend." })));
    if (editable) {
      const error = h("p", { class: "error", role: "alert" });
      const add = h("form", { class: "inline", "aria-label": "Add a budget" },
        field("Metric", select("metric", [["credits", "credits"], ["tokens", "tokens"], ["requests", "requests"]], "credits")),
        field("Period", select("period", [["day", "day"], ["month", "month"]], "month")),
        field("Limit", h("input", { name: "limit", required: true, inputmode: "decimal" })),
        field("Mode", select("mode", [["hard", "hard (refuse)"], ["soft", "soft (alert)"]], "hard")),
        field("Key id (optional)", h("input", { name: "key_id" })),
        h("button", { class: "primary", type: "submit", text: "Add budget" }), error);
      add.addEventListener("submit", async (event) => {
        event.preventDefault();
        try { await put(`/api/v1/projects/${project}/budgets`, { budgets: [...budgets.data.map(budgetSpec), formValues(add)] }); again(); } catch (f) { error.textContent = f.message; }
      });
      parts.push(panel("Add a budget", add));
    }
    parts.push(policyPanel(project, policy, again));
    replace(main, ...parts);
  },
};

function policyPanel(project, policy, again) {
  const facts = policy.store_bodies
    ? `Stored for ${policy.retention_days} days, credentials${policy.redact.length ? `, ${policy.redact.join(", ")}` : ""} redacted; shown to admins only.`
    : "Not stored (the default).";
  if (!can("bodies")) return panel("Prompts and answers", h("p", { text: facts }));
  const error = h("p", { class: "error", role: "alert" });
  const rules = ["emails", "card_numbers", "phone_numbers"];
  const form = h("form", { class: "inline", "aria-label": "Prompt and answer storage" },
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "store_bodies", checked: policy.store_bodies }), "Store prompts and answers"),
    field("Retention (days)", h("input", { name: "retention_days", type: "number", min: 1, max: 3650, value: String(policy.retention_days) })),
    ...rules.map((r) => h("label", { class: "check" }, h("input", { type: "checkbox", name: `redact_${r}`, checked: policy.redact.includes(r) }), `Redact ${r.replace("_", " ")}`)),
    h("button", { type: "submit", text: "Save" }), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const body = { store_bodies: v.store_bodies, retention_days: Number(v.retention_days || 7), redact: rules.filter((r) => v[`redact_${r}`]) };
    try { await put(`/api/v1/projects/${project}/request-log`, body); toast("Saved."); again(); } catch (f) { error.textContent = f.message; }
  });
  return panel("Prompts and answers", h("p", { class: "muted small", text: facts }), form);
}
