// Projects and their members: system admins create projects; a project's admins add people
// (a new user with a password, or a role for an existing user id), change roles, remove them.
import { del, get, post, put } from "../api.js";
import { badge, field, fmt, formValues, h, panel, replace, select, table, toast } from "../dom.js";
import { loadProjects } from "../lookups.js";
import { can, session } from "../session.js";

const ROLES = [["viewer", "viewer"], ["member", "member"], ["admin", "admin"]];

function submitting(form, action) {
  const error = h("p", { class: "error", role: "alert" });
  form.append(error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await action(formValues(form));
      form.reset();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  return form;
}

export default {
  name: "projects",
  title: "Projects",
  allowed: () => can("projects:read"),
  async render(main, { params, setParams }) {
    const again = () => this.render(main, { params, setParams });
    const projects = await loadProjects();
    const chosen = params.project || session.principal.project_id;
    const parts = [h("h1", { text: "Projects" })];
    if (can("system")) {
      parts.push(panel("Create a project", submitting(h("form", { class: "inline", "aria-label": "Create a project" },
        field("Name", h("input", { name: "name", required: true, maxlength: 200 })),
        field("Id (optional)", h("input", { name: "id", maxlength: 64 })),
        h("button", { class: "primary", type: "submit", text: "Create project" })),
      async (v) => { await post("/api/v1/projects", v); toast(`Project ${v.name} created.`); again(); })));
    }
    parts.push(panel("Projects", table([
      { label: "Name", value: (p) => h("button", { type: "button", class: "link", text: p.name, onclick: () => setParams({ project: p.id }) }) },
      { label: "Id", value: (p) => h("span", { class: "mono", text: p.id }) },
      { label: "Created", value: (p) => fmt.date(p.created_at) },
      { label: "Limits", value: (p) => (p.limits ? Object.entries(p.limits).map(([k, v]) => `${k} ${v}`).join(", ") : "none") },
      { label: "", value: (p) => (p.id === chosen ? badge("shown below") : "") },
    ], projects)));
    if (can("members")) {
      const users = (await get("/api/v1/users", { project_id: chosen })).data;
      const roleIn = (u) => u.memberships.find((m) => m.project_id === chosen)?.role;
      parts.push(panel(`Members of ${chosen}`, table([
        { label: "Email", value: (u) => u.email },
        { label: "User id", value: (u) => h("span", { class: "mono", text: u.id }) },
        { label: "Role", value: (u) => select("role", ROLES, roleIn(u), {
          "aria-label": `Role of ${u.email}`,
          onchange: async (e) => {
            try { await put(`/api/v1/projects/${chosen}/members/${u.id}`, { role: e.target.value }); toast("Role changed."); } catch (f) { toast(f.message, "bad"); again(); }
          },
        }) },
        { label: "Active", value: (u) => (u.active ? badge("active", "ok") : badge("inactive", "bad")) },
        { label: "", value: (u) => h("button", {
          type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${u.email}`,
          onclick: async () => {
            if (!confirm(`Remove ${u.email} from ${chosen}?`)) return;
            try { await del(`/api/v1/projects/${chosen}/members/${u.id}`); again(); } catch (f) { toast(f.message, "bad"); }
          },
        }) },
      ], users, { empty: "No members yet." }),
      h("h3", { text: "Add a person" }),
      submitting(h("form", { class: "inline", "aria-label": "Add a new user" },
        field("Email", h("input", { name: "email", type: "email", required: true })),
        field("Password", h("input", { name: "password", type: "password", required: true, autocomplete: "new-password" })),
        field("Role", select("role", ROLES, "member")),
        h("button", { class: "primary", type: "submit", text: "Add user" })),
      async (v) => { await post("/api/v1/users", { ...v, project_id: chosen }); toast(`${v.email} added.`); again(); }),
      submitting(h("form", { class: "inline", "aria-label": "Add an existing user" },
        field("Existing user id", h("input", { name: "user_id", required: true })),
        field("Role", select("role", ROLES, "member")),
        h("button", { type: "submit", text: "Add existing user" })),
      async (v) => { await put(`/api/v1/projects/${chosen}/members/${v.user_id}`, { role: v.role }); again(); })));
    }
    replace(main, ...parts);
  },
};
