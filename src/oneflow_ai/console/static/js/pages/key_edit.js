// Editing a key after its creation: name, expiry, allowed models and (admins) limits. Only
// what changed is sent (PATCH /api/v1/keys/{id}); the gateway applies it on every replica
// before it answers. Escape or Cancel leaves the key as it was.
import { patch } from "../api.js";
import { field, fmt, formValues, h } from "../dom.js";
import { can } from "../session.js";

const LIMITS = [
  ["requests_per_minute", "Requests / minute"],
  ["requests_per_hour", "Requests / hour"],
  ["tokens_per_minute", "Tokens / minute"],
];

// The PATCH body: the fields whose value differs from the key's (null: remove / never / all).
export function changes(key, values) {
  const body = {};
  if (values.name && values.name !== key.name) body.name = values.name;
  if (values.never_expires) {
    if (key.expires_at) body.expires_at = null;
  } else if (values.expires_in_days) {
    body.expires_in_days = Number(values.expires_in_days);
  }
  const before = [...(key.allowed_models || [])].sort();
  const after = [...(values.allowed_models || [])].sort();
  if (before.join("\n") !== after.join("\n")) body.allowed_models = after.length ? after : null;
  if (can("key-limits")) {
    const limits = {};
    for (const [name] of LIMITS) {
      const was = key.limits?.[name] ?? null;
      const now = values[name] === undefined ? null : Number(values[name]);
      if (was !== now) limits[name] = now;
    }
    if (Object.keys(limits).length) body.limits = limits;
  }
  return body;
}

export function editForm(key, models, { onSaved, onCancel }) {
  const allowed = new Set(key.allowed_models || []);
  const choices = [...new Set([...models, ...allowed])];
  const error = h("p", { class: "error", role: "alert" });
  const limitFields = can("key-limits")
    ? LIMITS.map(([name, label]) =>
      field(label, h("input", { name, type: "number", min: 1, value: key.limits?.[name] ?? "" })))
    : [];
  const form = h("form", { class: "inline", "aria-label": `Edit ${key.name}` },
    field("Name", h("input", { name: "name", required: true, maxlength: 200, value: key.name })),
    field(`Expires in days (now: ${key.expires_at ? fmt.time(key.expires_at) : "never"})`,
      h("input", { name: "expires_in_days", type: "number", min: 1, max: 3650 })),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "never_expires" }), "Never expires"),
    field("Allowed models (none selected: all)",
      h("select", { name: "allowed_models", multiple: true, size: 4 },
        choices.map((m) => h("option", { value: m, selected: allowed.has(m) }, m)))),
    ...limitFields,
    h("div", { class: "actions" },
      h("button", { class: "primary", type: "submit", text: "Save changes" }),
      h("button", { type: "button", text: "Cancel", onclick: onCancel })),
    error);
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") onCancel();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = changes(key, formValues(form));
    error.textContent = "";
    if (!Object.keys(body).length) {
      error.textContent = "Nothing changed.";
      return;
    }
    try {
      onSaved(await patch(`/api/v1/keys/${key.id}`, body));
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  return form;
}
