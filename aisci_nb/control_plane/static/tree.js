// The tree search drawn as a tree: one row per depth, nodes coloured good/buggy/best;
// a click (or Enter) shows the node's plan, code, output and metric.
import { api, el, fmt, svg } from "./api.js";

const DX = 34, DY = 54, R = 11, PAD = 20;

function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, { ...n, children: [] }]));
  const roots = [];
  for (const n of byId.values()) {
    const parent = n.parent && byId.get(n.parent);
    if (parent) parent.children.push(n); else roots.push(n);
  }
  let nextX = 0;
  const place = (n, depth) => {
    n.depth = depth;
    if (!n.children.length) { n.x = nextX++; return; }
    n.children.forEach((c) => place(c, depth + 1));
    n.x = (n.children[0].x + n.children[n.children.length - 1].x) / 2;
  };
  const stages = [...new Set(roots.map((r) => r.stage))];
  for (const st of stages) {
    roots.filter((r) => r.stage === st).forEach((r) => place(r, 0));
    nextX += 0.6; // a gap between stages
  }
  return [...byId.values()];
}

export function drawTree(container, nodes, runId) {
  container.replaceChildren();
  if (!nodes.length) { container.append(el("p", { class: "muted", text: "No search nodes yet." })); return; }
  const placed = layout(nodes);
  const width = PAD * 2 + Math.max(...placed.map((n) => n.x)) * DX + 2 * R;
  const height = PAD * 2 + Math.max(...placed.map((n) => n.depth)) * DY + 2 * R;
  const s = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
                         "aria-label": `Search tree, ${nodes.length} nodes` });
  const pos = (n) => [PAD + R + n.x * DX, PAD + R + n.depth * DY];
  const byId = new Map(placed.map((n) => [n.id, n]));
  for (const n of placed) {
    const p = n.parent && byId.get(n.parent);
    if (!p) continue;
    const [x1, y1] = pos(p), [x2, y2] = pos(n);
    s.append(svg("path", { d: `M${x1},${y1 + R} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2 - R}`, class: "edge" }));
  }
  for (const n of placed) {
    const [x, y] = pos(n);
    const label = `${n.stage || ""} node ${n.id}: ${n.state}${n.metric !== null && n.metric !== undefined ? `, metric ${fmt(n.metric)}` : ""}`;
    const g = svg("g", { class: `node ${n.state}`, tabindex: 0, role: "button", "aria-label": label, "data-node": n.id });
    g.append(svg("circle", { cx: x, cy: y, r: n.state === "best" ? R + 2 : R }));
    const t = svg("title"); t.textContent = label; g.append(t);
    const open = () => showNode(runId, n, g);
    g.addEventListener("click", open);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    s.append(g);
  }
  container.append(el("div", { class: "tree-scroll" }, s));
}

async function showNode(runId, n, g) {
  document.querySelectorAll("#tree .node.selected").forEach((x) => x.classList.remove("selected"));
  g.classList.add("selected");
  const box = document.getElementById("node-detail");
  box.hidden = false;
  box.replaceChildren(el("p", { class: "muted", text: `Loading node ${n.id}…` }));
  let d;
  try {
    d = await api("GET", `/api/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(n.id)}`);
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", text: String(err.message) }));
    return;
  }
  const metric = d.metric && typeof d.metric === "object" ? `${d.metric.name ?? "metric"} = ${fmt(d.metric.value)}` : fmt(d.metric ?? n.metric);
  const section = (title, text, cls = "") => text ? [el("h4", { text: title }), el("pre", { class: cls, text })] : [];
  box.replaceChildren(
    el("h3", { text: `Node ${n.id}` }),
    el("p", {}, el("span", { class: `status node-${n.state}`, text: n.state }),
       ` ${n.stage || ""} · metric ${metric || "—"}${d.exc_type ? ` · ${d.exc_type}` : ""}${d.reason ? ` · ${d.reason}` : ""}`),
    ...section("Plan", d.plan),
    ...section("Code", d.code, "code"),
    ...section("Output", d.term_out || d.exc_info && String(d.exc_info)),
    ...section("Analysis", d.analysis),
    d.journal ? null : el("p", { class: "muted", text: "Plan and code come with the stage's journal when the stage ends." }),
  );
  box.focus?.();
}
