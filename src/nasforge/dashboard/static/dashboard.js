// nasforge dashboard: draws the JSON views of the server with plotly.js and polls them.
// Every value from a study is put into the page as text (el() makes text nodes), never as markup.
"use strict";

const POLL_MS = 1000 * (parseFloat(document.body.dataset.poll) || 2);
const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const liveBadge = document.getElementById("live");
const state = { route: "", timer: null, sort: { key: "n", dir: 1 }, filters: {}, seen: "" };
const OK = "#3b6fb6", BAD = "#c0392b", RUN = "#e0a030", FRONT = "#d35400", PRUNED = "#8e8e8e";
const COLOURS = ["#3b6fb6", "#d35400", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"];

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const acc = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(4));
function count(v) {
  if (v === null || v === undefined) return "–";
  for (const [d, s] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (Math.abs(v) >= d) return (v / d).toPrecision(3) + s;
  return String(Math.round(v));
}
function secs(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 3 * 3600) return (v / 3600).toFixed(1) + " h";
  if (v >= 120) return (v / 60).toFixed(1) + " min";
  return v.toFixed(1) + " s";
}
const when = (ts) => (ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–");
const card = (k, v, cls) => el("div", { class: "card " + (cls || "") }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
// replaceChildren() would show a null as the text "null": drop the empty parts first
const setView = (...nodes) => view.replaceChildren(...nodes.flat().filter((x) => x !== null && x !== undefined && x !== false));
const section = (title, ...body) => el("section", {}, el("h2", {}, title), ...body);
const plotDiv = (id, caption) => el("figure", {}, caption ? el("figcaption", {}, caption) : null, el("div", { id: id, class: "plot" }));
const link = (href, text) => el("a", { href: href }, text);
function kv(items) {
  return el("table", { class: "kv" }, items.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}
async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: "bad answer from the server (" + r.status + ")" }; }
  if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
  return body;
}
function setLive(ok, text) {
  liveBadge.textContent = text;
  liveBadge.className = "live " + (ok ? "ok" : "bad");
}
const LAYOUT = { margin: { l: 55, r: 15, t: 28, b: 45 }, height: 290, font: { size: 11 }, hovermode: "closest",
  paper_bgcolor: "#fff", plot_bgcolor: "#fff", legend: { orientation: "h", y: -0.25 } };
function plot(id, traces, layout) {
  const node = document.getElementById(id);
  if (!node || !window.Plotly) return;
  Plotly.react(node, traces, Object.assign({}, LAYOUT, { uirevision: id }, layout), { displaylogo: false, responsive: true });
  return node;
}
// an accuracy axis around the values (a flat line would otherwise get plotly's default span)
function accAxis(title, ys) {
  const v = ys.flat().filter((y) => y !== null && y !== undefined);
  if (!v.length) return axis(title);
  const lo = Math.min(...v), hi = Math.max(...v), pad = Math.max(0.02, 0.08 * (hi - lo));
  return axis(title, { range: [Math.max(0, lo - pad), Math.min(1.02, hi + pad)] });
}
function axis(title, extra) { return Object.assign({ title: { text: title }, gridcolor: "#eee", zeroline: false }, extra || {}); }

// ------------------------------------------------------------------ overview
async function overview(update) {
  const d = await getJSON("/api/studies");
  crumbs.replaceChildren();
  const sig = JSON.stringify(d.studies.map((s) => [s.id, s.error, s.summary && [s.summary.finished, s.summary.running, s.summary.best_acc, Math.round(s.summary.time_left_s || 0)]]));
  if (!update || sig !== state.seen) {
    state.seen = sig;
    const rows = d.studies.map((s) => {
      const sm = s.summary;
      const box = el("input", { type: "checkbox", class: "pick", value: s.id, "aria-label": "compare " + s.path });
      if (!sm) return el("tr", { class: "err" }, el("td", {}, box), el("td", {}, s.path), el("td", { colspan: 8, class: "bad" }, s.error));
      const counts = Object.entries(sm.counts).map(([k, v]) => k + " " + v).join(", ");
      return el("tr", {},
        el("td", {}, box),
        el("td", {}, link("#/s/" + s.id, sm.name || s.path), el("div", { class: "muted small" }, s.path)),
        el("td", {}, el("span", { class: "badge " + (sm.live ? "run" : "done") }, sm.live ? "running" : "idle")),
        el("td", { class: "num" }, sm.finished + (sm.max_evals ? " / " + sm.max_evals : "")),
        el("td", {}, counts || "no trial yet"),
        el("td", { class: "num" }, acc(sm.best_acc), sm.best_trial !== null ? el("span", { class: "muted" }, " (#" + sm.best_trial + ")") : null),
        el("td", { class: "num" }, secs(sm.elapsed_s)),
        el("td", { class: "num" }, sm.live ? secs(sm.time_left_s) : "–"),
        el("td", { class: "num" }, sm.finals),
        el("td", {}, s.error ? el("span", { class: "bad" }, s.error) : ""));
    });
    const cmp = el("button", { on: { click: () => {
      const ids = [...document.querySelectorAll("input.pick:checked")].map((b) => b.value);
      location.hash = "#/compare/" + ids.join(",");
    } } }, "compare selected");
    setView(
      section("Studies (" + d.studies.length + ")",
        el("table", { class: "wide" }, el("thead", {}, el("tr", {}, ["", "study", "state", "finished", "by status", "best val acc", "elapsed", "time left", "final runs", ""].map((h) => el("th", {}, h)))), el("tbody", {}, rows)),
        el("p", {}, cmp, el("span", { class: "muted" }, "  tick studies to compare them; new studies in a watched folder appear here"))),
      section("Best validation accuracy so far, all studies", plotDiv("ov-best")));
  }
  const ok = d.studies.filter((s) => s.summary);
  plot("ov-best", ok.map((s, i) => ({ x: s.best_by_time.x.map((v) => v / 60), y: s.best_by_time.y, mode: "lines+markers",
    line: { shape: "hv", color: COLOURS[i % COLOURS.length] }, marker: { size: 4 }, name: s.summary.name + " (" + s.path.split("/").pop() + ")" })),
  { xaxis: axis("minutes since the study's first trial"), yaxis: accAxis("best val acc", ok.map((s) => s.best_by_time.y)) });
}

// ------------------------------------------------------------------ one study
function progressCards(sm) {
  const frac = sm.max_evals ? Math.min(1, sm.finished / sm.max_evals) : null;
  return el("div", { class: "cards" },
    card("finished" + (sm.max_evals ? " of " + sm.max_evals : ""), String(sm.finished)),
    card("running", String(sm.running), sm.running ? "run" : ""),
    card("ok", String(sm.ok)), card("failed", String(sm.failed), sm.failed ? "bad" : ""),
    card("pruned", String(sm.pruned)),
    card("best val acc", acc(sm.best_acc) + (sm.best_trial !== null ? "  #" + sm.best_trial : "")),
    card("elapsed", secs(sm.elapsed_s)), card("time left (est.)", sm.live ? secs(sm.time_left_s) : "–"),
    frac === null ? null : el("div", { class: "bar", title: Math.round(frac * 100) + "% of max_evals" }, el("div", { style: "width:" + (frac * 100).toFixed(1) + "%" })));
}

function trialTable(d) {
  const f = state.filters;
  const pick = (key, label) => {
    const values = [...new Set(d.trials.map((t) => t[key]))].sort();
    return el("label", {}, label + " ", el("select", { "data-key": key, on: { change: (ev) => { f[key] = ev.target.value; drawTable(d); } } },
      el("option", { value: "" }, "all"), values.map((v) => el("option", { value: v, selected: f[key] === v }, v))));
  };
  return el("div", {}, el("div", { class: "filters" }, pick("status", "status"), pick("budget", "budget"), pick("kind", "kind"),
    el("span", { id: "shown", class: "muted" })), el("div", { id: "trial-table", class: "scroll" }));
}
const COLUMNS = [["n", "trial", 1], ["status", "status", 0], ["val_acc", "val acc", 1], ["params", "params", 1], ["flops", "FLOPs", 1],
  ["epochs", "epochs", 1], ["seconds", "time", 1], ["budget", "budget", 0], ["kind", "kind", 0], ["parent", "parent", 1], ["worker", "worker", 0], ["error", "error", 0]];
function drawTable(d) {
  const holder = document.getElementById("trial-table");
  if (!holder) return;
  const f = state.filters, s = state.sort;
  let rows = d.trials.filter((t) => ["status", "budget", "kind"].every((k) => !f[k] || t[k] === f[k]));
  rows = rows.slice().sort((a, b) => {
    const x = a[s.key], y = b[s.key];
    if (x === y) return a.n - b.n;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * s.dir;
  });
  document.getElementById("shown").textContent = rows.length + " of " + d.trials.length + " trials";
  const head = el("tr", {}, COLUMNS.map(([k, label, num]) => el("th", { class: (num ? "num " : "") + "sortable", on: { click: () => {
    state.sort = { key: k, dir: s.key === k ? -s.dir : (k === "val_acc" ? -1 : 1) }; drawTable(d); } } },
    label + (s.key === k ? (s.dir > 0 ? " ▲" : " ▼") : ""))));
  const fmt = { val_acc: acc, params: count, flops: count, seconds: secs };
  const body = rows.map((t) => el("tr", { class: t.status },
    COLUMNS.map(([k, , num]) => {
      let v = t[k];
      if (k === "n") v = link("#/s/" + d.id + "/t/" + t.n, "#" + t.n);
      else if (k === "parent" && v !== null) v = link("#/s/" + d.id + "/t/" + v, "#" + v);
      else v = fmt[k] ? fmt[k](v) : (v === null || v === undefined ? "" : v);
      return el("td", { class: num ? "num" : (k === "error" ? "bad" : "") }, v);
    })));
  holder.replaceChildren(el("table", { class: "wide" }, el("thead", {}, head), el("tbody", {}, body)));
}

function finalsSection(d) {
  if (!d.finals.length) return section("Final runs", el("p", { class: "muted" }, "No final training recorded yet (nasforge train STUDY.db --best)."));
  const rows = d.finals.map((r) => el("tr", {}, el("td", {}, r.trial === null ? "file" : link("#/s/" + d.id + "/t/" + r.trial, "#" + r.trial)),
    el("td", { class: "num" }, r.seed), el("td", {}, r.status), el("td", { class: "num" }, acc(r.test_acc) + (r.test_acc_single_view == null ? "" : " (single view " + acc(r.test_acc_single_view) + ")")), el("td", { class: "num" }, count(r.params)),
    el("td", {}, r.budget), el("td", { class: "num" }, secs(r.seconds))));
  return section("Final runs (whole training set, test accuracy)", el("div", { class: "grid2" },
    el("table", {}, el("thead", {}, el("tr", {}, ["trial", "seed", "status", "test acc", "params", "budget", "time"].map((h) => el("th", {}, h)))), el("tbody", {}, rows)),
    plotDiv("p-finals", "Final training: test accuracy per epoch")));
}

function studyPlots(d) {
  const okPts = d.points;
  plot("p-trial", [
    { x: okPts.map((p) => p.n), y: okPts.map((p) => p.acc), mode: "markers", name: "ok trial", marker: { color: OK, size: 7, opacity: 0.75 }, customdata: okPts.map((p) => p.n), hovertemplate: "trial %{x}: %{y:.4f}<extra></extra>" },
    { x: d.best_by_trial.x, y: d.best_by_trial.y, mode: "lines", line: { shape: "hv", color: FRONT }, name: "best so far" }],
  { xaxis: axis("trial number"), yaxis: accAxis("val acc", okPts.map((p) => p.acc)) });
  plot("p-time", [{ x: d.best_by_time.x.map((v) => v / 60), y: d.best_by_time.y, mode: "lines+markers", line: { shape: "hv", color: FRONT }, marker: { size: 4 }, name: "best so far" }],
    { xaxis: axis("minutes since the first trial"), yaxis: accAxis("best val acc", d.best_by_time.y) });
  const tl = d.timeline;
  const colour = (s) => (s === "ok" ? OK : s === "failed" ? BAD : s === "running" ? RUN : PRUNED);
  plot("p-timeline", [{ type: "bar", orientation: "h", base: tl.map((b) => b.x0 / 60), x: tl.map((b) => Math.max((b.x1 - b.x0) / 60, 1e-3)), y: tl.map((b) => b.worker),
    marker: { color: tl.map((b) => colour(b.status)), line: { color: "#fff", width: 0.5 } }, customdata: tl.map((b) => b.n),
    text: tl.map((b) => "#" + b.n + " " + b.status), hovertemplate: "%{text}<br>%{base:.2f} min, %{x:.2f} min long<extra></extra>", textposition: "none" }],
  { xaxis: axis("minutes since the first trial"), yaxis: axis("", { automargin: true, type: "category" }),
    height: Math.max(220, 90 + 28 * new Set(tl.map((b) => b.worker)).size), barmode: "overlay", showlegend: false });
  for (const cost of ["params", "flops"]) {
    const pts = okPts.filter((p) => p[cost]);
    const front = new Set(d.pareto[cost]);
    const fp = pts.filter((p) => front.has(p.n)).sort((a, b) => a[cost] - b[cost]);
    plot("p-" + cost, [
      { x: pts.map((p) => p[cost]), y: pts.map((p) => p.acc), mode: "markers", name: "ok trial", marker: { color: OK, size: 7, opacity: 0.75 }, customdata: pts.map((p) => p.n), hovertemplate: "trial %{customdata}: %{y:.4f}, %{x:.3s}<extra></extra>" },
      { x: fp.map((p) => p[cost]), y: fp.map((p) => p.acc), mode: "lines+markers", name: "Pareto front", line: { shape: "hv", color: FRONT }, marker: { color: FRONT, size: 8 }, customdata: fp.map((p) => p.n), hovertemplate: "trial %{customdata}: %{y:.4f}, %{x:.3s}<extra></extra>" }],
    { xaxis: axis(cost === "params" ? "parameters" : "FLOPs / image", pts.length > 1 && Math.max(...pts.map((p) => p[cost])) / Math.min(...pts.map((p) => p[cost])) > 30 ? { type: "log", dtick: 1, tickformat: "~s" } : { tickformat: "~s" }), yaxis: accAxis("val acc", pts.map((p) => p.acc)) });
  }
  const runs = d.finals.filter((r) => r.curve.length);
  if (document.getElementById("p-finals")) plot("p-finals", runs.map((r, i) => ({ x: r.curve.map((c) => c.epoch), y: r.curve.map((c) => c.acc), mode: "lines+markers", name: "trial " + r.trial + " seed " + r.seed, line: { color: COLOURS[i % COLOURS.length] } })),
    { xaxis: axis("epoch"), yaxis: axis("test acc") });
  for (const id of ["p-trial", "p-timeline", "p-params", "p-flops"]) {
    const node = document.getElementById(id);
    if (node && !node.dataset.clicks) {
      node.dataset.clicks = "1";
      node.on("plotly_click", (ev) => { const n = ev.points[0].customdata; if (n !== undefined) location.hash = "#/s/" + d.id + "/t/" + n; });
    }
  }
}

async function study(sid, update) {
  const d = await getJSON("/api/study/" + encodeURIComponent(sid));
  const sm = d.summary;
  crumbs.replaceChildren(" / ", link("#/s/" + sid, sm.name || sid));
  const sig = JSON.stringify([sm.finished, sm.running, sm.total, d.finals.length, d.study_error]);
  if (!update || sig !== state.seen || !document.getElementById("p-trial")) {
    state.seen = sig;
    const run = d.config.run || {}, space = d.config.space || {}, strat = d.config.strategy || {};
    setView(
      el("h1", {}, sm.name || "study", " ", el("span", { class: "muted small" }, sm.path)),
      d.study_error ? el("p", { class: "bad" }, d.study_error) : null,
      progressCards(sm),
      el("p", { class: "muted small" }, "space " + (space.name || "?") + ", strategy " + (strat.name || "?") + ", max_evals " + run.max_evals +
        (run.time_limit ? ", time limit " + secs(run.time_limit) : "") + ", " + run.workers + " worker(s); started " + when(sm.started_at)),
      section("Progress", el("div", { class: "grid2" }, plotDiv("p-trial", "Validation accuracy by trial (dots) and best so far"), plotDiv("p-time", "Best so far against time")), plotDiv("p-timeline", "Worker timeline: a bar per trial (blue ok, red failed, amber running, grey other)")),
      section("Accuracy against size (click a point for its trial)", el("div", { class: "grid2" }, plotDiv("p-params", "Validation accuracy against parameters, Pareto front in orange"), plotDiv("p-flops", "Validation accuracy against FLOPs per image, Pareto front in orange"))),
      section("Trials", trialTable(d)),
      finalsSection(d));
    drawTable(d);
  } else {
    view.querySelector(".cards").replaceWith(progressCards(sm));
  }
  studyPlots(d);
}

// ------------------------------------------------------------------ one trial
async function trial(sid, n, update) {
  const d = await getJSON("/api/study/" + encodeURIComponent(sid) + "/trial/" + encodeURIComponent(n));
  const r = d.row, m = d.metrics || {};
  crumbs.replaceChildren(" / ", link("#/s/" + sid, d.study || sid), " / ", "trial " + r.n);
  const sig = JSON.stringify([r.status, d.finished_at, d.finals.length, d.children]);
  if (update && sig === state.seen) return;
  state.seen = sig;
  const items = [["status", el("span", { class: "badge " + r.status }, r.status)], ["validation accuracy", acc(r.val_acc)], ["best epoch val acc", acc(m.best_val_acc)],
    ["parameters", r.params === null ? "–" : r.params.toLocaleString("en")], ["FLOPs / image", count(r.flops)], ["epochs run", m.epochs_run ?? "–"],
    ["train time", secs(m.train_seconds ?? null)], ["images / s", m.images_per_second ? Math.round(m.images_per_second) : "–"], ["budget", r.budget], ["kind", r.kind],
    ["worker", r.worker || "–"], ["attempts", d.attempts], ["submitted", when(d.submitted_at)], ["started", when(d.started_at)], ["finished", when(d.finished_at)],
    ["continued from", r.parent === null ? "–" : link("#/s/" + sid + "/t/" + r.parent, "trial #" + r.parent)],
    ["continued by", d.children.length ? d.children.map((c, i) => [i ? ", " : "", link("#/s/" + sid + "/t/" + c, "#" + c)]) : "–"]];
  d.finals.forEach((f) => items.push(["final run seed " + f.seed, f.status + ", test acc " + acc(f.test_acc)]));
  const drawing = el("img", { src: "/api/study/" + encodeURIComponent(sid) + "/trial/" + encodeURIComponent(n) + "/drawing.svg", alt: "network of trial " + r.n, class: "drawing" });
  drawing.addEventListener("error", () => drawing.replaceWith(el("p", { class: "muted" }, "no drawing for this genome")));
  setView(
    el("h1", {}, "Trial #" + r.n + " ", el("span", { class: "muted small" }, d.study || "")),
    d.genome_text ? el("p", { class: "desc" }, d.genome_text) : null,
    el("div", { class: "grid3" }, el("section", {}, el("h2", {}, "Network"), drawing), section("Metrics", kv(items)), section("Learning curve", plotDiv("p-curve"))),
    r.status === "failed" || d.error ? section("Error", el("pre", { class: "bad" }, d.error || "(none recorded)"), el("h3", {}, "stderr"), el("pre", {}, d.stderr || "(empty)")) : null,
    section("Genome and budget", el("details", {}, el("summary", {}, "genome (JSON)"), el("pre", {}, JSON.stringify(d.genome, null, 1))),
      el("details", {}, el("summary", {}, "budget (JSON)"), el("pre", {}, JSON.stringify(d.budget, null, 1))),
      el("details", {}, el("summary", {}, "all metrics (JSON)"), el("pre", {}, JSON.stringify(m, null, 1)))));
  const c = d.curve.filter((x) => x.epoch !== undefined && x.epoch !== null);
  plot("p-curve", [
    { x: c.map((x) => x.epoch), y: c.map((x) => x.val_acc), mode: "lines+markers", name: "val acc", line: { color: OK } },
    { x: c.map((x) => x.epoch), y: c.map((x) => x.train_loss), mode: "lines+markers", name: "train loss", yaxis: "y2", line: { color: "#777", dash: "dash" } },
    { x: c.map((x) => x.epoch), y: c.map((x) => x.val_loss), mode: "lines+markers", name: "val loss", yaxis: "y2", line: { color: FRONT, dash: "dot" } }],
  { xaxis: axis("epoch", { dtick: 1 }), yaxis: axis("val acc", { range: [0, 1.02] }), yaxis2: axis("loss", { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false }), height: 320, margin: { l: 55, r: 55, t: 28, b: 45 },
    annotations: c.length ? [] : [{ text: "no learning curve recorded", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] });
}

// ------------------------------------------------------------------ comparison
async function compare(ids, update) {
  const all = await getJSON("/api/studies");
  const chosen = all.studies.filter((s) => s.summary && (ids.length === 0 || ids.includes(s.id)));
  crumbs.replaceChildren(" / compare " + chosen.length + " studies");
  const sig = JSON.stringify(chosen.map((s) => [s.id, s.summary.finished, s.summary.best_acc]));
  if (!update || sig !== state.seen) {
    state.seen = sig;
    const rows = chosen.map((s) => { const sm = s.summary; return el("tr", {}, el("td", {}, link("#/s/" + s.id, sm.name)), el("td", { class: "muted small" }, s.path),
      el("td", { class: "num" }, sm.finished), el("td", { class: "num" }, sm.failed), el("td", { class: "num" }, acc(sm.best_acc)), el("td", { class: "num" }, secs(sm.elapsed_s)), el("td", { class: "num" }, sm.finals)); });
    setView(section("Comparison", el("table", { class: "wide" }, el("thead", {}, el("tr", {}, ["study", "file", "finished", "failed", "best val acc", "elapsed", "final runs"].map((h) => el("th", {}, h)))), el("tbody", {}, rows)),
      el("div", { class: "grid2" }, plotDiv("c-time", "Best so far against time"), plotDiv("c-trial", "Best so far against finished trials"))));
  }
  plot("c-time", chosen.map((s, i) => ({ x: s.best_by_time.x.map((v) => v / 60), y: s.best_by_time.y, mode: "lines", line: { shape: "hv", color: COLOURS[i % COLOURS.length] }, name: s.summary.name + " (" + s.path.split("/").pop() + ")" })),
    { xaxis: axis("minutes since the first trial"), yaxis: accAxis("best val acc", chosen.map((s) => s.best_by_time.y)) });
  plot("c-trial", chosen.map((s, i) => ({ x: s.best_by_time.y.map((_, k) => k + 1), y: s.best_by_time.y, mode: "lines", line: { shape: "hv", color: COLOURS[i % COLOURS.length] }, name: s.summary.name + " (" + s.path.split("/").pop() + ")" })),
    { xaxis: axis("finished trials"), yaxis: accAxis("best val acc", chosen.map((s) => s.best_by_time.y)) });
}

// ------------------------------------------------------------------ routing and polling
async function render(update) {
  const parts = (location.hash.replace(/^#\/?/, "") || "").split("/").filter(Boolean);
  try {
    if (parts[0] === "s" && parts[2] === "t") await trial(parts[1], parts[3], update);
    else if (parts[0] === "s") await study(parts[1], update);
    else if (parts[0] === "compare") await compare((parts[1] || "").split(",").filter(Boolean), update);
    else await overview(update);
    setLive(true, "live · updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setLive(false, String(e.message || e));
    if (!update) setView(el("p", { class: "bad" }, String(e.message || e)), el("p", {}, link("#/", "all studies")));
  }
}
function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => { if (!document.hidden) await render(true); schedule(); }, POLL_MS);
}
window.addEventListener("hashchange", () => { state.seen = ""; state.filters = {}; window.scrollTo(0, 0); render(false).then(schedule); });
render(false).then(schedule);
