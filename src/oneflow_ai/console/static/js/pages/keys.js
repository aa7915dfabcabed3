// API keys: list, create (the secret is shown once, with a copy button), edit (name, expiry,
// allowed models, limits: `key_edit.js`), rotate with a grace period, revoke.
import { get, post } from "../api.js";
import { badge, field, fmt, formValues, h, panel, replace, select, table, toast } from "../dom.js";
import { loadModels, loadProjects } from "../lookups.js";
import { can, outranks, session } from "../session.js";
import { editForm } from "./key_edit.js";

const STATUS = { active: "ok", rotating: "warn", revoked: "bad", expired: "bad", rotated: "bad" };

function secretPanel(made, onDone) {
  const input = h("input", { type: "text", readonly: true, value: made.key, "aria-label": "The new key", class: "mono" });
  const copy = h("button", {
    type: "button", text: "Copy",
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(made.key);
        toast("Copied to the clipboard.");
      } catch {
        toast("Select the key and copy it (Ctrl+C).", "bad");
      }
    },
  });
  const done = h("button", { type: "button", class: "primary", text: "I have stored it", onclick: onDone });
  return h("div", { class: "secret", role: "alert", "data-secret": "shown" },
    h("strong", { text: `Key ${made.name}: shown this once, store it now.` }), input, copy, done);
}

function limitsText(limits) {
  if (!limits) return "defaults";
  const names = { requests_per_minute: "rpm", requests_per_hour: "rph", tokens_per_minute: "tpm" };
  return Object.entries(limits).map(([k, v]) => `${v} ${names[k] || k}`).join(", ");
}

function createForm(project, models, onCreated) {
  const limitFields = can("key-limits") ? [
    field("Requests / minute", h("input", { name: "rpm", type: "number", min: 1 })),
    field("Requests / hour", h("input", { name: "rph", type: "number", min: 1 })),
    field("Tokens / minute", h("input", { name: "tpm", type: "number", min: 1 })),
  ] : [];
  const roles = [["member", "member"], ["viewer", "viewer"], ...(can("key-limits") ? [["admin", "admin"]] : [])];
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "inline", "aria-label": "Create a key" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200 })),
    field("Role", select("role", roles, "member")),
    field("Expires in days", h("input", { name: "expires_in_days", type: "number", min: 1, max: 3650 })),
    field("Allowed models", select("allowed_models", models.map((m) => [m, m]), null, { multiple: true, size: 3 })),
    ...limitFields,
    h("button", { class: "primary", type: "submit", text: "Create key" }), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const body = { name: v.name, role: v.role, project_id: project };
    if (v.expires_in_days) body.expires_in_days = Number(v.expires_in_days);
    if (v.allowed_models?.length) body.allowed_models = v.allowed_models;
    const limits = {};
    if (v.rpm) limits.requests_per_minute = Number(v.rpm);
    if (v.rph) limits.requests_per_hour = Number(v.rph);
    if (v.tpm) limits.tokens_per_minute = Number(v.tpm);
    if (Object.keys(limits).length) body.limits = limits;
    error.textContent = "";
    try {
      onCreated(await post("/api/v1/keys", body));
      form.reset();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  return form;
}

export default {
  name: "keys",
  title: "Keys",
  allowed: () => can("keys:read"),
  async render(main, { params, setParams }) {
    const own = session.principal.project_id;
    const project = params.project || own;
    const [projects, models, listed] = await Promise.all([
      can("system") ? loadProjects() : [], can("keys:write") ? loadModels() : [], get("/api/v1/keys", { project_id: project }),
    ]);
    const secretSlot = h("div");
    const editSlot = h("div");
    const edit = (key, opener) => {
      const close = () => { replace(editSlot); opener.focus(); };
      replace(editSlot, panel(`Edit ${key.name}`, editForm(key, models, {
        onSaved: (saved) => { toast(`${saved.name} saved.`); replace(editSlot); this.render(main, { params, setParams }); },
        onCancel: close,
      })));
      editSlot.querySelector("input").focus();
    };
    const showSecret = (made) => {
      replace(secretSlot, secretPanel(made, () => { replace(secretSlot); this.render(main, { params, setParams }); }));
      secretSlot.querySelector("input").focus();
    };
    const actions = (key) => {
      if (!can("keys:write") || !outranks(key.role)) return "";
      const editable = ["active", "rotating", "expired"].includes(key.status);
      const editButton = editable ? h("button", {
        type: "button", text: "Edit", "aria-label": `Edit ${key.name}`,
        onclick: (event) => edit(key, event.currentTarget),
      }) : null;
      if (!["active", "rotating"].includes(key.status)) return editButton ? h("div", { class: "actions" }, editButton) : "";
      return h("div", { class: "actions" }, editButton,
        h("button", {
          type: "button", text: "Rotate", "aria-label": `Rotate ${key.name}`,
          onclick: async () => {
            const hours = prompt(`Rotate ${key.name}: hours the old key keeps working`, "24");
            if (hours === null) return;
            try {
              showSecret(await post(`/api/v1/keys/${key.id}/rotate`, { grace_seconds: Math.round(Number(hours) * 3600) }));
            } catch (failure) { toast(failure.message, "bad"); }
          },
        }),
        h("button", {
          type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke ${key.name}`,
          onclick: async () => {
            if (!confirm(`Revoke ${key.name} now, on every replica?`)) return;
            try {
              await post(`/api/v1/keys/${key.id}/revoke`);
              toast(`${key.name} revoked.`);
              this.render(main, { params, setParams });
            } catch (failure) { toast(failure.message, "bad"); }
          },
        }));
    };
    const picker = projects.length ? h("form", { class: "filters" },
      field("Project", select("project", projects.map((p) => [p.id, p.name]), project, { onchange: (e) => setParams({ project: e.target.value }) }))) : null;
    replace(main,
      h("h1", { text: "Keys" }), picker, secretSlot, editSlot,
      can("keys:write") ? panel("Create a key", createForm(project, models, showSecret)) : null,
      panel(`Keys of ${project}`, table([
        { label: "Name", value: (k) => k.name },
        { label: "Prefix", value: (k) => h("span", { class: "mono", text: k.prefix }) },
        { label: "Role", value: (k) => k.role },
        { label: "Status", value: (k) => badge(k.status, STATUS[k.status] || "") },
        { label: "Expires", value: (k) => (k.grace_until ? `grace until ${fmt.time(k.grace_until)}` : fmt.time(k.expires_at)) },
        { label: "Last used", value: (k) => fmt.time(k.last_used_at) },
        { label: "Limits", value: (k) => (k.unlimited ? "unlimited" : limitsText(k.limits)) },
        { label: "Models", wrap: true, value: (k) => (k.allowed_models ? k.allowed_models.join(", ") : "all") },
        { label: "", value: actions },
      ], listed.data, { empty: "This project has no keys yet." })));
  },
};
