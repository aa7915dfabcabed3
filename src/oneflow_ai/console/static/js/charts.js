// Charts drawn with uPlot (vendored, see ../vendor/VENDORED.md): stacked bars over time.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";

const PALETTE = ["#1f4fd1", "#e07b24", "#2a9d5b", "#c23b6e", "#7b5cd6", "#3aa5b8", "#b59a1f", "#8a8f99"];
const HEIGHT = 260;

export function color(index) {
  return PALETTE[index % PALETTE.length];
}

// `times`: bucket starts (unix seconds); `series`: [{label, values}] bottom first. Each series
// is drawn at its running total so that the bars stack; the legend shows its own value.
export function stackedBars(container, { times, series, format, label }) {
  container.setAttribute("role", "img");
  container.setAttribute("aria-label", label);
  if (!times.length || !series.length) {
    container.append(h("p", { class: "muted", text: "No requests in this range." }));
    return null;
  }
  const totals = [];
  let running = times.map(() => 0);
  for (const s of series) {
    running = running.map((v, i) => v + (Number(s.values[i]) || 0));
    totals.push(running);
  }
  const order = series.map((_, i) => i).reverse(); // the tallest stack first, the rest over it
  const bars = uPlot.paths.bars({ size: [0.8, 48], gap: 1 });
  const options = {
    width: Math.max(280, container.clientWidth || 600),
    height: HEIGHT,
    scales: { x: { time: true } },
    legend: { live: true },
    cursor: { points: { show: false } },
    series: [
      { label: "Time" },
      ...order.map((i) => ({
        label: series[i].label,
        stroke: color(i),
        fill: color(i),
        width: 0,
        paths: bars,
        points: { show: false },
        value: (_u, _v, _s, index) => (index === null || index === undefined ? "–" : format(series[i].values[index] ?? 0)),
      })),
    ],
    axes: [{}, { size: 72, values: (_u, ticks) => ticks.map((t) => format(t)) }],
  };
  const plot = new uPlot(options, [times, ...order.map((i) => totals[i])], container);
  const resize = new ResizeObserver(() => {
    const width = Math.max(280, container.clientWidth);
    if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
  });
  resize.observe(container);
  return plot;
}
