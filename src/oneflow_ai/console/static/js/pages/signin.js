// Sign in with email and password, or with an API key.
import { field, formValues, h, replace } from "../dom.js";
import { signInWithKey, signInWithPassword } from "../session.js";

function errorLine() {
  return h("p", { class: "error", role: "alert" });
}

export default {
  name: "signin",
  title: "Sign in",
  allowed: () => true,
  render(main, { onSignedIn }) {
    const passwordError = errorLine();
    const keyError = errorLine();
    const submit = (form, error, action) => async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      error.textContent = "";
      try {
        await action(formValues(form));
        await onSignedIn();
      } catch (failure) {
        error.textContent = failure.message;
      } finally {
        button.disabled = false;
      }
    };
    const byPassword = h("form", { "aria-label": "Sign in with email and password" },
      field("Email", h("input", { name: "email", type: "email", autocomplete: "username", required: true })),
      field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
      field("Project (optional)", h("input", { name: "project_id", autocomplete: "off" })),
      h("button", { class: "primary", type: "submit", text: "Sign in" }),
      passwordError);
    byPassword.addEventListener("submit", submit(byPassword, passwordError,
      (v) => signInWithPassword(v.email, v.password, v.project_id)));
    const byKey = h("form", { "aria-label": "Sign in with an API key" },
      field("API key", h("input", { name: "key", type: "password", autocomplete: "off", required: true, spellcheck: "false" })),
      h("p", { class: "small muted", text: "An admin key opens the console of its role; any other key shows that key's own usage, limits and requests. The key is kept in this page's memory only." }),
      h("button", { class: "primary", type: "submit", text: "Use this key" }),
      keyError);
    byKey.addEventListener("submit", submit(byKey, keyError, (v) => signInWithKey(v.key)));
    replace(main, h("div", { class: "signin" },
      h("h1", { text: "Sign in to OneFlow" }),
      h("section", { class: "panel" }, h("h2", { text: "Email and password" }), byPassword),
      h("section", { class: "panel" }, h("h2", { text: "API key" }), byKey)));
    main.querySelector("input").focus();
  },
};
