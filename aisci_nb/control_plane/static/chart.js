// Small SVG line and bar charts drawn from data the server put in the page.
import { el, fmt, svg } from "./api.js";

const W = 420, H = 160, PAD = { l: 46, r: 10, t: 12, b: 24 };

export function lineChart(title, points, { yLabel = "" } = {}) {
  // points: [{x: number, y: number}]
  const fig = el("figure", { class: "chart" });
  fig.append(el("figcaption", { text: title }));
  const ys = points.map((p) => p.y).filter((y) => typeof y === "number" && isFinite(y));
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${ys.length} points` });
  if (!ys.length) { fig.append(el("p", { class: "muted", text: "no values" })); return fig; }
  const xs = points.map((p) => p.x);
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) === Math.min(...xs) ? Math.min(...xs) + 1 : Math.max(...xs)];
  const sx = (x) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const sy = (y) => H - PAD.b - ((y - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
  s.append(svg("line", { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, class: "axis" }));
  s.append(svg("line", { x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b, class: "axis" }));
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    const t = svg("text", { x: PAD.l - 4, y: sy(v) + 4, class: "tick", "text-anchor": "end" });
    t.textContent = fmt(v);
    s.append(t);
  }
  const d = points.filter((p) => typeof p.y === "number" && isFinite(p.y))
    .map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
  s.append(svg("path", { d, class: "line" }));
  const last = points[points.length - 1];
  if (typeof last.y === "number") s.append(svg("circle", { cx: sx(last.x), cy: sy(last.y), r: 3, class: "last" }));
  if (yLabel) { const t = svg("text", { x: PAD.l, y: H - 6, class: "tick" }); t.textContent = yLabel; s.append(t); }
  fig.append(s);
  return fig;
}

export function barChart(title, rows, keys) {
  // rows: [{label, <key>: number}], keys: [[key, cssClass]] stacked
  const fig = el("figure", { class: "chart" });
  fig.append(el("figcaption", { text: title }));
  const totals = rows.map((r) => keys.reduce((a, [k]) => a + (r[k] || 0), 0));
  const max = Math.max(1, ...totals);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const bw = Math.max(2, (W - PAD.l - PAD.r) / Math.max(1, rows.length) - 2);
  rows.forEach((r, i) => {
    let y = H - PAD.b;
    for (const [k, cls] of keys) {
      const h = ((r[k] || 0) / max) * (H - PAD.t - PAD.b);
      if (!h) continue;
      y -= h;
      const rect = svg("rect", { x: PAD.l + i * (bw + 2), y, width: bw, height: h, class: `bar ${cls}` });
      const t = svg("title"); t.textContent = `${r.label} ${k}: ${fmt(r[k])}`; rect.append(t);
      s.append(rect);
    }
  });
  const t = svg("text", { x: PAD.l - 4, y: PAD.t + 8, class: "tick", "text-anchor": "end" });
  t.textContent = fmt(max); s.append(t);
  s.append(svg("line", { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, class: "axis" }));
  fig.append(s);
  return fig;
}
