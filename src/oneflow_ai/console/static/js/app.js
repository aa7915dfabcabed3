// The console's shell: sign-in, navigation between pages (URLs under /console, filters in the
// query string so that a page's view can be bookmarked and shared), and who is signed in.
import { ApiError, whenSignedOut } from "./api.js";
import { h, replace, toast } from "./dom.js";
import { restore, session, signOut } from "./session.js";
import overview from "./pages/overview.js";
import requests from "./pages/requests.js";
import keys from "./pages/keys.js";
import projects from "./pages/projects.js";
import billing from "./pages/billing.js";
import circuits from "./pages/circuits.js";
import self from "./pages/self.js";
import signin from "./pages/signin.js";

const BASE = "/console";
const PAGES = [overview, requests, keys, projects, billing, circuits, self];
const main = document.getElementById("main");

function pageFor(name) {
  const page = PAGES.find((p) => p.name === name);
  if (page && page.allowed()) return page;
  return PAGES.find((p) => p.allowed());
}

function currentName() {
  const rest = location.pathname.slice(BASE.length).replace(/^\/+/, "");
  return rest.split("/")[0] || "";
}

export function navigate(name, params = {}, { replace: swap = false } = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const target = `${BASE}${name ? `/${name}` : ""}${query.toString() ? `?${query}` : ""}`;
  if (target !== location.pathname + location.search) {
    history[swap ? "replaceState" : "pushState"](null, "", target);
  }
  return render();
}

function renderNav(active) {
  const nav = document.getElementById("nav");
  if (!session.signedIn) return replace(nav);
  replace(nav, PAGES.filter((p) => p.allowed()).map((p) => {
    const link = h("a", {
      href: `${BASE}${p.name ? `/${p.name}` : ""}`,
      "aria-current": p === active ? "page" : null,
      text: p.title,
      onclick: (event) => { event.preventDefault(); navigate(p.name); },
    });
    return link;
  }));
}

function renderWho() {
  const who = document.getElementById("who");
  const p = session.principal;
  if (!p) return replace(who);
  const label = p.self_only ? `key ${p.key_id}` : p.kind === "master" ? "master key" : `${p.role} · ${p.project_id}`;
  replace(who,
    h("span", { text: label, title: p.user_id || p.key_id || "" }),
    h("button", { type: "button", text: "Sign out", onclick: async () => { await signOut(); navigate(""); } }));
}

async function render() {
  if (!session.signedIn) {
    renderNav(null);
    renderWho();
    document.title = "Sign in · OneFlow console";
    const view = h("div");
    replace(main, view);
    return signin.render(view, { onSignedIn: () => navigate(currentName(), Object.fromEntries(new URLSearchParams(location.search)), { replace: true }) });
  }
  const page = pageFor(currentName());
  renderNav(page);
  renderWho();
  document.title = `${page.title} · OneFlow console`;
  const params = Object.fromEntries(new URLSearchParams(location.search));
  const context = {
    params,
    // Change the page's query (its filters) and show it again.
    setParams: (next) => navigate(page.name, next, { replace: true }),
    navigate,
  };
  // Each view renders into a container of its own: if another navigation replaces it before
  // its data arrives, what it draws later lands in a detached element and is never seen.
  const view = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  replace(main, view);
  try {
    await page.render(view, context);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    replace(view, h("h1", { text: page.title }), h("p", { class: "error", role: "alert", text: error.message }));
  }
}

whenSignedOut((message) => { toast(message, "bad"); signOut().then(() => render()); });
window.addEventListener("popstate", () => render());

(async () => {
  await restore();
  await render();
})();

