// Circuit breakers of every provider and model (system admins): state, window counts, when an
// open circuit next lets a probe through.
import { get } from "../api.js";
import { badge, fmt, h, panel, replace, table } from "../dom.js";
import { can } from "../session.js";

const STATE = { closed: "ok", half_open: "warn", open: "bad" };

export default {
  name: "circuits",
  title: "Circuits",
  allowed: () => can("system"),
  async render(main) {
    const data = await get("/api/v1/admin/circuits");
    replace(main,
      h("h1", { text: "Circuit breakers" }),
      h("p", { class: "muted small", text: `State read from ${data.source}. A provider's circuit opens at a failure rate of ${data.config.provider.failure_rate ?? "–"}, a model's at ${data.config.model.failure_rate ?? "–"}.` }),
      panel(null, table([
        { label: "Circuit", value: (c) => h("span", { class: "mono", text: c.key }) },
        { label: "State", value: (c) => badge(c.state, STATE[c.state] || "") },
        { label: "Successes", num: true, value: (c) => fmt.int(c.successes) },
        { label: "Failures", num: true, value: (c) => fmt.int(c.failures) },
        { label: "Failure rate", num: true, value: (c) => fmt.pct(c.failure_rate, 1) },
        { label: "Retry in", num: true, value: (c) => (c.retry_in_seconds ? `${fmt.num(c.retry_in_seconds)} s` : "–") },
        { label: "Times opened", num: true, value: (c) => fmt.int(c.times_opened) },
      ], data.circuits, { empty: "No circuit has seen a call yet." })));
  },
};
