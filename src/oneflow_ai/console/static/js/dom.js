// Building the page: elements from data (text only, never HTML strings), formatting, tables,
// meters and notices. The console's CSP forbids inline script and style and requires Trusted
// Types for script sinks: nothing here parses markup.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = String(value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2).toLowerCase(), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value" && "value" in el) el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

export const fmt = {
  int: (v) => (v === null || v === undefined ? "–" : integer.format(Number(v))),
  num: (v) => (v === null || v === undefined ? "–" : decimal.format(Number(v))),
  // Credits and USD arrive as exact decimal strings: shown as they are, trailing zeros trimmed.
  credits: (v) => (v === null || v === undefined ? "–" : trimZeros(String(v))),
  usd: (v) => (v === null || v === undefined ? "–" : "$" + trimZeros(String(v))),
  ms: (v) => (v === null || v === undefined ? "–" : `${decimal.format(Number(v))} ms`),
  pct: (part, whole) => (whole ? `${decimal.format((100 * part) / whole)} %` : "–"),
  time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
  date: (iso) => (iso ? new Date(iso).toLocaleDateString() : "–"),
};

// The exact sum of decimal strings (credits: six places), as a decimal string.
export function sumDecimals(values, places = 6) {
  const scale = 10n ** BigInt(places);
  let total = 0n;
  for (const value of values) {
    const [whole, fraction = ""] = String(value ?? "0").replace("-", "").split(".");
    const units = BigInt(whole || "0") * scale + BigInt((fraction + "0".repeat(places)).slice(0, places) || "0");
    total += String(value).startsWith("-") ? -units : units;
  }
  const sign = total < 0n ? "-" : "";
  const magnitude = total < 0n ? -total : total;
  return `${sign}${magnitude / scale}.${(magnitude % scale).toString().padStart(places, "0")}`;
}

export function trimZeros(text) {
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

// A table: columns are {label, value(row) -> text|Node, num?: bool, wrap?: bool}.
export function table(columns, rows, { empty = "Nothing yet.", onRow, caption } = {}) {
  if (!rows.length) return h("p", { class: "muted", text: empty });
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, scope: "col", text: c.label })));
  const body = rows.map((row) => {
    const tr = h("tr", { class: onRow ? "clickable" : null },
      columns.map((c) => {
        const value = c.value(row);
        return h("td", { class: [c.num ? "num" : "", c.wrap ? "wrap" : ""].join(" ").trim() || null }, value ?? "–");
      }));
    return tr;
  });
  return h("div", { class: "table-wrap" },
    h("table", {}, caption ? h("caption", { class: "muted small", text: caption }) : null,
      h("thead", {}, head), h("tbody", {}, body)));
}

// A progress bar of used / limit (warns past 80 %, alarms at 100 %).
export function meter(used, limit, label) {
  const share = limit > 0 ? Math.min(1, used / limit) : used > 0 ? 1 : 0;
  const fill = h("span");
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  const bar = h("div", {
    class: `bar${share >= 1 ? " bad" : share >= 0.8 ? " warn" : ""}`,
    role: "progressbar", "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": used,
    "aria-label": label,
  }, fill);
  return h("div", { class: "meter" }, bar, h("span", { class: "small muted", text: label }));
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}`.trim(), text });
}

export function statusBadge(status) {
  return badge(String(status), status >= 500 ? "bad" : status >= 400 ? "warn" : "ok");
}

export function toast(message, kind = "") {
  const box = document.getElementById("toast");
  const note = h("div", { class: kind, text: message });
  box.append(note);
  setTimeout(() => note.remove(), 6000);
}

export function tile(label, value) {
  return h("div", { class: "tile" }, h("div", { class: "label", text: label }), h("div", { class: "value", text: value }));
}

export function panel(title, ...children) {
  return h("section", { class: "panel" }, title ? h("h2", { text: title }) : null, children);
}

// The values of a form's named fields (checkboxes as booleans, empty fields left out).
export function formValues(form) {
  const values = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") values[el.name] = el.checked;
    else if (el.multiple) values[el.name] = [...el.selectedOptions].map((o) => o.value);
    else if (el.value.trim() !== "") values[el.name] = el.value.trim();
  }
  return values;
}

export function field(label, input) {
  return h("label", {}, label, input);
}

export function select(name, options, value, props = {}) {
  return h("select", { name, ...props },
    options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value ?? "") }, text)));
}
