// The pages' behaviour: live updates (server-sent events), forms that call the JSON API,
// the tree and the charts. One module per concern; this one wires them to the page.
import { api, el, fmt, toast } from "./api.js";
import { barChart, lineChart } from "./chart.js";
import { live, throttled } from "./live.js";
import { drawTree } from "./tree.js";

const page = document.body.dataset.page;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");
const hhmmss = (iso) => (iso ? iso.slice(11, 23) : "");

function statusBadge(s) { return el("span", { class: `status s-${s}`, text: s ?? "" }); }

function progress(p, label) {
  const pct = Math.round((p || 0) * 1000) / 10;
  return [el("progress", { max: 100, value: pct, "aria-label": `${label} progress` }),
          el("span", { class: "pct", text: ` ${Math.round(pct)}%` })];
}

function runRow(r, showHide = false) {
  const stage = r.currentStage ? [`${r.currentStage.name} `, ...progress(r.currentStage.progress, r.currentStage.name)] : [];
  const tds = [
    el("td", {}, el("a", { href: `/runs/${r._id}` }, el("code", { text: r._id.slice(-10) }))),
    el("td", {}, el("a", { href: `/hypotheses/${r.hypothesisId}`, text: r.title || r.hypothesisId })),
    el("td", { "data-field": "status" }, statusBadge(r.status)),
    el("td", { "data-field": "stage" }, ...stage),
    el("td", { text: (r.pod && r.pod.id) || r.claimedBy || "" }),
    el("td", { text: String(r.priority ?? "") }),
    el("td", {}, el("time", { datetime: r.createdAt, text: when(r.createdAt) })),
  ];
  if (showHide) tds.push(el("td", {}, el("button", { type: "button", "data-action": r.hidden ? "unhide" : "hide", "data-run-id": r._id, text: r.hidden ? "Unhide" : "Hide" })));
  return el("tr", { "data-run": r._id }, ...tds);
}

function formJSON(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) out[k] = typeof v === "string" ? v.trim() : v;
  return out;
}

function busy(button, on) { if (button) { button.disabled = on; button.setAttribute("aria-busy", on ? "true" : "false"); } }

// -- everywhere -------------------------------------------------------------------------

document.addEventListener("click", async (e) => {
  const copy = e.target.closest("[data-copy]");
  if (copy) {
    const text = document.getElementById(copy.dataset.copy)?.textContent ?? "";
    try { await navigator.clipboard.writeText(text); toast("Copied"); } catch { toast(text); }
    return;
  }
  const hide = e.target.closest("[data-action=hide],[data-action=unhide]");
  if (hide) {
    const action = hide.dataset.action;
    try {
      await api("POST", `/api/runs/${encodeURIComponent(hide.dataset.runId)}/${action}`);
      hide.closest("tr")?.remove();
      toast(action === "hide" ? "Run hidden" : "Run shown again");
    } catch (err) { toast(err.message, "error"); }
  }
});

// -- overview -----------------------------------------------------------------------------

function overviewPage() {
  const refresh = throttled(async () => {
    const d = await api("GET", "/api/overview");
    for (const [s, n] of Object.entries(d.counts)) { const c = $(`#counts [data-status="${s}"]`); if (c) c.textContent = n; }
    const body = $("#latest-runs tbody");
    if (body) body.replaceChildren(...(d.runs.length ? d.runs.map((r) => runRow(r)) : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No runs." }))]));
    const workers = $("#workers tbody");
    if (workers && d.workers.length) workers.replaceChildren(...d.workers.map((w) => el("tr", {},
      el("td", {}, el("code", { text: w.pod })), el("td", { text: w.mode || "run" }), el("td", { text: w.region || "any" }),
      el("td", { text: w.gpu || "CPU" }),
      el("td", {}, w.currentRun ? el("a", { href: `/runs/${w.currentRun}` }, el("code", { text: w.currentRun.slice(-10) })) : el("span", { class: "muted", text: "idle" })),
      el("td", {}, el("time", { datetime: w.lastHeartbeat, text: when(w.lastHeartbeat) })))));
  }, 500);
  live(null, refresh);

  const draft = $("#draft-form");
  draft?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = $("button", draft);
    busy(button, true);
    try {
      const d = await api("POST", "/api/hypotheses/draft", { notes: draft.notes.value });
      const form = $("#hypothesis-form");
      form.title.value = d.title;
      form.idea.value = d.hypothesis;
      form.title.focus();
      toast("Drafted: edit it, then create the hypothesis");
    } catch (err) { toast(err.message, "error"); } finally { busy(button, false); }
  });

  const form = $("#hypothesis-form");
  form?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = formJSON(form);
    const result = $("#hypothesis-result");
    const body = { title: f.title, ideation: form.ideation.checked, priority: Number(f.priority || 0) };
    if (f.idea) body.idea = f.idea;
    if (f.topic) body.topic = f.topic;
    if (f.region) body.region = f.region;
    if (body.ideation) { body.reflections = Number(f.reflections || 3); body.numIdeas = Number(f.numIdeas || 1); }
    if (f.ideaJson) {
      try { body.ideaJson = JSON.parse(f.ideaJson); } catch (err) { result.textContent = `Idea JSON: ${err.message}`; result.className = "form-result error"; return; }
    }
    const button = $("button[type=submit]", form);
    busy(button, true);
    try {
      const d = await api("POST", "/api/hypotheses", body);
      result.className = "form-result ok";
      result.replaceChildren("Created: ", el("a", { href: `/hypotheses/${d.hypothesis_id}`, id: "created-hypothesis", text: f.title }),
        d.run_id ? el("span", {}, " · run ", el("a", { href: `/runs/${d.run_id}`, text: d.run_id.slice(-10) })) : "");
      form.reset();
      refresh();
    } catch (err) { result.className = "form-result error"; result.textContent = err.message; }
    finally { busy(button, false); }
  });
}

// -- runs list ----------------------------------------------------------------------------

function runsPage() {
  const refresh = throttled(async () => {
    const d = await api("GET", `/api/runs${location.search}`);
    for (const r of d.runs) {
      const row = $(`#runs tr[data-run="${r._id}"]`);
      if (!row) continue;
      $("[data-field=status]", row).replaceChildren(statusBadge(r.status));
      const stage = $("[data-field=stage]", row);
      if (r.currentStage) stage.replaceChildren(`${r.currentStage.name} `, ...progress(r.currentStage.progress, r.currentStage.name));
    }
  }, 1000);
  live(null, (ev) => { if (ev.runId && $(`#runs tr[data-run="${ev.runId}"]`)) refresh(); });
}

// -- one run ------------------------------------------------------------------------------

const REFRESHING = /^ai\.(run\.(?!log)|node\.|artifact\.|validation\.|paper\.|llm\.)/;

function eventRow(ev) {
  const data = ev.message ? { message: ev.message, ...ev.data } : ev.data;
  return el("tr", { class: `lvl-${ev.level || "none"} fresh`, "data-event": ev.id, "data-arrived": String(Date.now()) },
    el("td", { text: ev.seq ?? "" }), el("td", { text: hhmmss(ev.time) }),
    el("td", { title: ev.type, text: ev.type }), el("td", {}, el("code", { text: JSON.stringify(data) })));
}

function renderStages(stages) {
  const body = $("#stages tbody");
  if (!body || !stages.length) return;
  body.replaceChildren(...stages.map((s) => el("tr", { "data-stage": s.name },
    el("td", { text: s.name }), el("td", {}, statusBadge(s.status)), el("td", {}, ...progress(s.progress, s.name)),
    el("td", { text: s.totalNodes !== undefined && s.totalNodes !== null ? `${s.goodNodes || 0} / ${s.buggyNodes || 0} / ${s.totalNodes || 0}` : "" }),
    el("td", { text: fmt(s.bestMetric) }),
    el("td", { text: s.eta_s ? `${(s.eta_s / 60).toFixed(1)} min` : s.duration_s ? `took ${Math.round(s.duration_s)} s` : "" }))));
}

function renderCharts(series) {
  const box = $("#charts");
  if (!box) return;
  const figs = [];
  for (const [stage, metrics] of Object.entries(series || {})) {
    for (const [name, points] of Object.entries(metrics)) {
      figs.push(lineChart(`${stage} · ${name}`, points.map((p, i) => ({ x: p.seq ?? i, y: p.value }))));
    }
  }
  if (figs.length) box.replaceChildren(...figs);
}

function renderArtifacts(runId, artifacts) {
  const body = $("#artifacts tbody");
  if (!body || !artifacts.length) return;
  body.replaceChildren(...artifacts.map((a) => el("tr", {},
    el("td", {}, el("a", { href: `/api/runs/${runId}/artifacts/${a.key}`, download: true }, el("code", { text: a.key }))),
    el("td", { text: a.kind || "" }), el("td", { text: String(a.size ?? "") }), el("td", {}, el("code", { text: (a.sha256 || "").slice(0, 12) })))));
  const figures = artifacts.filter((a) => a.view === "figure");
  if (figures.length) {
    let box = $("#figures");
    if (!box) { box = el("div", { class: "figures", id: "figures" }); $("#artifacts").before(el("h3", { text: "Figures" }), box); }
    const have = new Set($$("img", box).map((i) => i.dataset.key));
    for (const a of figures) if (!have.has(a.key)) box.append(el("figure", {}, el("img", { src: `/api/runs/${runId}/inline/${a.key}`, alt: a.key.split("/").pop(), "data-key": a.key }), el("figcaption", { text: a.key.split("/").pop() })));
  }
  const pdf = artifacts.find((a) => a.view === "pdf");
  if (pdf && !$("#pdf-link")) {
    const url = `/api/runs/${runId}/inline/${pdf.key}`;
    $("#artifacts").before(el("h3", { text: "Paper" }), el("p", {}, el("a", { id: "pdf-link", href: url, target: "_blank", rel: "noopener", text: `Open ${pdf.key.split("/").pop()}` })), el("iframe", { class: "pdf", title: pdf.key, src: url }));
  }
}

function runPage() {
  const runId = document.body.dataset.runId;
  const events = $("#events");
  const tree = $("#tree");
  drawTree(tree, JSON.parse(tree.dataset.tree || "[]"), runId);
  renderCharts(JSON.parse($("#charts").dataset.series || "{}"));
  let status = $("#run-status")?.textContent;

  const refresh = throttled(async () => {
    const d = await api("GET", `/api/runs/${encodeURIComponent(runId)}`);
    const badge = $("#run-status");
    if (badge && d.run.status !== badge.textContent) {
      badge.textContent = d.run.status;
      badge.className = `status s-${d.run.status}`;
      if (status !== d.run.status) { status = d.run.status; toast(`Run is ${status}`); }
      const terminal = ["HUMAN_VALIDATED", "COMPLETED", "FAILED", "CANCELED"].includes(d.run.status);
      const cancel = $("[data-action=cancel]"); if (cancel) cancel.disabled = terminal;
      const retry = $("[data-action=retry]"); if (retry) retry.disabled = !terminal;
      const rerun = $("#rerun-form button"); if (rerun) rerun.disabled = !terminal;
      if (d.run.status === "AWAITING_HUMAN" && !$("#validation-form")) location.reload();
    }
    $("#timeline").replaceChildren(...d.timeline.map((t) => el("li", {}, el("time", { datetime: t.time, text: hhmmss(t.time) }), ` ${t.type}${t.to ? ` → ${t.to}` : ""}`)));
    renderStages(d.stages);
    drawTree(tree, d.tree, runId);
    renderCharts(d.series);
    renderArtifacts(runId, d.artifacts);
    const u = d.run.llmUsage;
    if (u) $("#usage-total").textContent = `${u.calls || 0} LLM call(s), ${u.promptTokens || 0} input tokens (${u.cachedTokens || 0} cached), ${u.completionTokens || 0} output tokens, $${(u.costUsd || 0).toFixed(4)}`;
  }, 400);

  live(runId, (ev) => {
    $("#last-seq").textContent = `#${ev.seq ?? ""}`;
    const level = events.dataset.level, type = events.dataset.type;
    const shows = events.dataset.live === "yes" && (!level || ev.level === level) && (!type || ev.type.startsWith(type));
    if (shows) {
      const body = $("tbody", events);
      body.append(eventRow(ev));
      while (body.rows.length > 500) body.deleteRow(0);
      const count = $("#events-count");
      count.dataset.total = Number(count.dataset.total) + 1;
      count.textContent = `${body.rows.length} of ${count.dataset.total} events`;
      const scroll = events.closest(".scroll");
      if (scroll) scroll.scrollTop = scroll.scrollHeight;
    }
    if (REFRESHING.test(ev.type)) refresh();
  });

  const act = async (button, method, url, body, done) => {
    const out = $("#action-result");
    busy(button, true);
    try { const d = await api(method, url, body); out.className = "form-result ok"; out.replaceChildren(...done(d)); refresh(); }
    catch (err) { out.className = "form-result error"; out.textContent = err.message; }
    finally { busy(button, false); }
  };
  $("[data-action=cancel]")?.addEventListener("click", (e) => {
    if (!confirm("Cancel this run?")) return;
    act(e.currentTarget, "POST", `/api/runs/${runId}/cancel`, {}, (d) => [`Cancel: ${d.status}`]);
  });
  $("[data-action=retry]")?.addEventListener("click", (e) => act(e.currentTarget, "POST", `/api/runs/${runId}/retry`, undefined,
    (d) => ["Retried as ", el("a", { href: `/runs/${d.run_id}`, id: "retry-link", text: d.run_id })]));
  $("#rerun-form")?.addEventListener("submit", (e) => {
    e.preventDefault();
    act($("button", e.currentTarget), "POST", `/api/runs/${runId}/rerun`, { from: e.currentTarget.from.value }, (d) => [`Re-run from ${d.from}: ${d.status}`]);
  });
  const vform = $("#validation-form");
  vform?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = formJSON(vform);
    const out = $(".form-result", vform);
    try {
      const d = await api("POST", `/api/validations/${runId}/human`, { verdict: f.verdict, notes: f.notes || null });
      out.className = "form-result ok"; out.textContent = `Recorded: ${d.verdict} → ${d.status}`;
      refresh();
    } catch (err) { out.className = "form-result error"; out.textContent = err.message; }
  });
}

// -- hypothesis ---------------------------------------------------------------------------

function ideaCard(idea, i, fields, canRun) {
  const dl = el("dl");
  for (const f of fields) if (idea[f]) dl.append(el("dt", { text: f }), el("dd", { text: idea[f] }));
  return el("article", { class: "card idea", "data-idea": String(i) }, el("h3", { text: idea.Title || idea.Name || `Idea ${i + 1}` }), dl,
    canRun ? el("button", { type: "button", class: "primary", "data-action": "run-idea", "data-index": String(i), text: "Run this idea" }) : null);
}

function hypothesisPage() {
  const id = document.body.dataset.hypothesisId;
  const canRun = document.body.dataset.canOperate === "yes";
  const refresh = throttled(async () => {
    const d = await api("GET", `/api/hypotheses/${encodeURIComponent(id)}/detail`);
    const st = $("#ideation-status");
    if (st && d.ideation.status) { st.textContent = d.ideation.status; st.className = `status s-${d.ideation.status}`; }
    if (d.ideas.length && d.ideas.length !== $$("#ideas .idea").length) {
      $("#ideas").replaceChildren(...d.ideas.map((idea, i) => ideaCard(idea, i, d.idea_fields, canRun)));
      $("#ideas-count").textContent = d.ideas.length;
    }
    $("#hypothesis-runs tbody").replaceChildren(...d.runs.map((r) => runRow({ ...r, title: d.hypothesis.title })));
  }, 500);
  live(null, (ev) => { if (ev.hypothesisId === id || ev.type.startsWith("ai.ideation.") || ev.type === "ai.run.enqueued") refresh(); });
  // Ideation runs on a worker; while it is pending, also look again every few seconds.
  const poll = setInterval(() => { if (["QUEUED", "RUNNING"].includes($("#ideation-status")?.textContent)) refresh(); else clearInterval(poll); }, 3000);
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("[data-action=run-idea]");
    if (!b) return;
    busy(b, true);
    try {
      const d = await api("POST", `/api/hypotheses/${encodeURIComponent(id)}/ideas/${b.dataset.index}/run`, {});
      toast("Run queued");
      location.assign(`/runs/${d.run_id}`);
    } catch (err) { toast(err.message, "error"); busy(b, false); }
  });
}

// -- metrics ------------------------------------------------------------------------------

function statsPage() {
  const box = $("#stats-charts");
  const s = JSON.parse(box.dataset.stats);
  const t = (iso) => Date.parse(iso) / 1000;
  box.replaceChildren(
    lineChart("Events per second (per minute, 6 h)", s.events_per_second.map((p) => ({ x: t(p.t), y: p.v }))),
    lineChart("Pickup latency, s (mean per hour)", s.pickup.filter((p) => p.latency_s !== null).map((p) => ({ x: t(p.t), y: p.latency_s }))),
    barChart("Runs created per hour", s.pickup.map((p) => ({ label: when(p.t), n: p.created })), [["n", "b0"]]),
    barChart("Runs per status per day", s.runs_per_day.map((d) => ({ label: when(d.t).slice(0, 10), ...d })),
      [["COMPLETED", "ok"], ["HUMAN_VALIDATED", "ok2"], ["FAILED", "bad"], ["CANCELED", "muted"], ["RUNNING", "run"], ["QUEUED", "b0"], ["AWAITING_HUMAN", "wait"]]),
    barChart("LLM tokens per day", s.llm.per_day.map((d) => ({ label: when(d.t).slice(0, 10), tokens: d.tokens })), [["tokens", "b0"]]),
    lineChart("LLM cost per day, USD", s.llm.per_day.map((d) => ({ x: t(d.t), y: d.cost }))),
  );
  live(null, throttled(() => api("GET", "/api/stats").then((d) => { $("#queue-depth").textContent = d.queue_depth; }), 2000));
}

const pages = { overview: overviewPage, runs: runsPage, run: runPage, hypothesis: hypothesisPage, stats: statsPage };
pages[page]?.();
