// keyshift status page. Reads only the JSON API (/v1/rollouts, /v1/kpis,
// /v1/funnel) and draws SVG by hand: no library, nothing fetched from
// elsewhere. A token, when the server needs one, is kept in this tab's
// sessionStorage. Every chart records how many data points it drew in
// data-points, and the page sets body[data-ready] when it is done (the
// headless-browser test reads both).
"use strict";

const STALE_AFTER_MS = 15 * 60 * 1000;
const COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"];
const SVG = "http://www.w3.org/2000/svg";

class AuthNeeded extends Error {}

const params = new URLSearchParams(location.search);
let token = sessionStorage.getItem("keyshift.token") || "";

async function api(path, query) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const resp = await fetch(url, { headers });
  if (resp.status === 401) throw new AuthNeeded();
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${body.error || ""}`);
  return body;
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function html(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
const num = (v) => (v === null || v === undefined ? "–" : v.toFixed(1));
const day = (t) => new Date(t).toISOString().slice(5, 10);

function plotOf(name) {
  return document.querySelector(`figure[data-chart="${name}"] .plot`);
}

function done(name, points) {
  const fig = document.querySelector(`figure[data-chart="${name}"]`);
  fig.dataset.points = String(points);
  if (points === 0) plotOf(name).replaceChildren(html("p", "empty", "no data in this range"));
}

function legend(names, colors) {
  const box = html("div", "legend");
  names.forEach((n, i) => {
    const item = html("span");
    const sw = html("i");
    sw.style.background = (colors || COLORS)[i % (colors || COLORS).length];
    item.append(sw, n);
    box.append(item);
  });
  return box;
}

// Lines over time: series = [{name, points: [[Date, value|null], ...]}].
function lineChart(name, series, fmt, baseline) {
  const W = 560, H = 220, L = 48, R = 12, T = 10, B = 26;
  const all = series.flatMap((s) => s.points).filter((p) => p[1] !== null);
  if (all.length === 0) return done(name, 0);
  const ts = all.map((p) => p[0].getTime());
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  let vmax = Math.max(...all.map((p) => p[1]), baseline || 0);
  vmax = vmax > 0 ? vmax * 1.1 : 1;
  // Ratios never go past 100 %.
  if (fmt === pct) vmax = Math.min(vmax, 1);
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    svg.append(el("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  const days = [...new Set(ts)].sort((a, b) => a - b);
  const every = Math.max(1, Math.ceil(days.length / 8));
  days.forEach((t, i) => {
    const anchor = x(t) > W - R - 20 ? "end" : x(t) < L + 20 ? "start" : "middle";
    if (i % every === 0) svg.append(el("text", { x: x(t), y: H - 8, "text-anchor": anchor }, day(t)));
  });
  if (baseline !== undefined && baseline !== null) {
    svg.append(el("line", { class: "baseline", x1: L, x2: W - R, y1: y(baseline), y2: y(baseline) }));
    svg.append(el("text", { x: W - R, y: y(baseline) - 4, "text-anchor": "end" }, "median " + fmt(baseline)));
  }
  let drawn = 0;
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[1] !== null).sort((a, b) => a[0] - b[0]);
    const color = COLORS[i % COLORS.length];
    if (pts.length > 1) {
      const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p[0].getTime()).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
      svg.append(el("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    }
    for (const p of pts) {
      const c = el("circle", { cx: x(p[0].getTime()), cy: y(p[1]), r: 3, fill: color });
      c.append(el("title", {}, `${s.name} ${day(p[0])}: ${fmt(p[1])}`));
      svg.append(c);
      drawn++;
    }
  });
  plotOf(name).replaceChildren(svg, legend(series.map((s) => s.name)));
  done(name, drawn);
}

// Horizontal bars: items = [{label, value, text, cls}].
function barChart(name, items) {
  const rows = items.filter((i) => i.value !== null && i.value !== undefined);
  if (rows.length === 0) return done(name, 0);
  const W = 560, row = 24, L = 170, R = 90;
  const H = rows.length * row + 6;
  const vmax = Math.max(...rows.map((r) => r.value)) || 1;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  rows.forEach((r, i) => {
    const yy = 3 + i * row;
    svg.append(el("text", { x: L - 8, y: yy + 15, "text-anchor": "end" }, r.label));
    const w = Math.max(1, (r.value / vmax) * (W - L - R));
    const bar = el("rect", { class: r.cls || "bar", x: L, y: yy + 3, width: w, height: row - 8 });
    bar.append(el("title", {}, `${r.label}: ${r.text}`));
    svg.append(bar);
    svg.append(el("text", { x: L + w + 6, y: yy + 15 }, r.text));
  });
  plotOf(name).replaceChildren(svg);
  done(name, rows.length);
}

// Per-key KPIs share a denominator: the keys summed is the whole.
function summed(points, scale) {
  if (points.length === 0) return null;
  const whole = points.find((p) => p.key === undefined);
  if (whole) return whole.value;
  const den = Math.max(...points.map((p) => p.denominator));
  const n = points.reduce((a, p) => a + (p.numerator || 0), 0);
  return den > 0 ? (scale * n) / den : null;
}

function showStale(header) {
  const banner = document.getElementById("stale");
  const range = document.getElementById("range");
  const to = header.complete_to ? new Date(header.complete_to) : null;
  const minute = (t) => new Date(t).toISOString().slice(0, 16).replace("T", " ");
  range.textContent = `${minute(header.from)} → ${minute(header.to)} UTC` + (to ? ` · complete up to ${minute(to)}` : "");
  const age = to ? Date.now() - to.getTime() : Infinity;
  if (age > STALE_AFTER_MS) {
    const hours = to ? (age / 3600000).toFixed(1) + " h ago" : "unknown";
    banner.textContent = `Data is stale: the store is complete only up to ${to ? to.toISOString() : "an unknown time"} (${hours}). Ingest may be behind or stopped; recent numbers will change.`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

async function rollouts() {
  const box = document.getElementById("rollouts");
  let list;
  try {
    list = (await api("/v1/rollouts")).rollouts;
  } catch (e) {
    if (e instanceof AuthNeeded) throw e;
    box.replaceChildren(html("p", "muted", "Rollouts need an admin token: " + e.message));
    return null;
  }
  if (!Array.isArray(list) || list.length === 0) {
    box.replaceChildren(html("p", "muted", "No rollouts configured."));
    return null;
  }
  box.replaceChildren();
  for (const r of list) {
    const card = html("div", "rollout");
    const step = r.state.step === null || r.state.step === undefined ? "–" : r.state.step + 1;
    card.append(html("h3", "", `${r.id}`));
    card.append(html("p", "meta", `${r.rp_id} · ${r.stage} · ${r.state.phase} at ${r.percent}% (step ${step} of ${r.steps.length}: ${r.steps.join("% → ")}%)`));
    const fig = html("figure", "chart");
    fig.dataset.chart = "timeline-" + r.id;
    fig.append(html("figcaption", "", "Exposure over time (hover a point for the decision and its reason)"));
    fig.append(html("div", "plot"));
    card.append(fig);
    box.append(card);
    const log = await api(`/v1/rollouts/${encodeURIComponent(r.id)}/decisions`);
    timeline("timeline-" + r.id, log.decisions);
  }
  return list[0].rp_id;
}

function timeline(name, decisions) {
  const W = 1100, H = 200, L = 44, R = 12, T = 10, B = 26;
  if (!decisions.length) return done(name, 0);
  const ts = decisions.map((d) => new Date(d.decided_at).getTime());
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (p) => T + (1 - p / 100) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (const p of [0, 25, 50, 75, 100]) {
    svg.append(el("line", { class: "axis", x1: L, x2: W - R, y1: y(p), y2: y(p) }));
    svg.append(el("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end" }, p + "%"));
  }
  let d = "";
  decisions.forEach((dec, i) => {
    const t = x(ts[i]);
    d += i === 0 ? `M${t},${y(dec.from_percent)}L${t},${y(dec.to_percent)}` : `L${t},${y(dec.from_percent)}L${t},${y(dec.to_percent)}`;
  });
  d += `L${W - R},${y(decisions[decisions.length - 1].to_percent)}`;
  svg.append(el("path", { d, fill: "none", stroke: COLORS[0], "stroke-width": 2 }));
  const color = { start: COLORS[0], advance: COLORS[2], complete: COLORS[2], hold: COLORS[1], rollback: COLORS[3], abort: COLORS[3], pause: COLORS[5], resume: COLORS[4], config_changed: COLORS[8] };
  decisions.forEach((dec, i) => {
    const c = el("circle", { cx: x(ts[i]), cy: y(dec.to_percent), r: 4, fill: color[dec.action] || COLORS[8] });
    c.append(el("title", {}, `${dec.decided_at} ${dec.action} ${dec.from_percent}% → ${dec.to_percent}%` + (dec.reason ? `: ${dec.reason}` : "")));
    svg.append(c);
  });
  svg.append(el("text", { x: L, y: H - 8 }, new Date(t0).toISOString().slice(0, 16).replace("T", " ")));
  svg.append(el("text", { x: W - R, y: H - 8, "text-anchor": "end" }, new Date(t1).toISOString().slice(0, 16).replace("T", " ")));
  const keys = ["start", "advance / complete", "hold", "rollback / abort", "pause", "resume"];
  const swatches = [color.start, color.advance, color.hold, color.rollback, color.pause, color.resume];
  plotOf(name).replaceChildren(svg, legend(keys, swatches));
  done(name, decisions.length);
}

async function funnels(rp) {
  const f = await api("/v1/funnel", { rp_id: rp });
  showStale(f);
  const names = { enrollment: "enrollment-funnel", passkey_signin: "signin-funnel" };
  for (const funnel of f.funnels) {
    const chart = names[funnel.funnel];
    if (!chart) continue;
    const total = funnel.totals.find((p) => p.group === undefined) || funnel.totals[0];
    if (!total) { done(chart, 0); continue; }
    const items = total.steps.map((s) => ({ label: s.step, value: s.count, text: s.count + (s.rate === null ? "" : ` (${pct(s.rate)})`) }));
    for (const x of total.exits) items.push({ label: x.step, value: x.count, text: `${x.count} (${pct(x.rate)})`, cls: "exit" });
    barChart(chart, items);
  }
}

function byGroup(kpi, scale) {
  const groups = new Map();
  for (const p of kpi.series) {
    const g = p.group === undefined ? "all" : p.group;
    if (!groups.has(g)) groups.set(g, new Map());
    const at = groups.get(g);
    if (!at.has(p.t)) at.set(p.t, []);
    at.get(p.t).push(p);
  }
  return [...groups.entries()].sort().map(([g, at]) => ({
    name: g,
    points: [...at.entries()].map(([t, pts]) => [new Date(t), summed(pts, scale)]),
  }));
}

async function kpis(rp) {
  const byPlatform = await api("/v1/kpis", { rp_id: rp, interval: "day", by: "platform", kpi: "passkey_signin_success,coverage" });
  showStale(byPlatform);
  for (const k of byPlatform.kpis) {
    const chart = k.kpi === "coverage" ? "coverage-by-platform" : "passkey-success-by-platform";
    lineChart(chart, byGroup(k, 1), pct);
  }
  const errors = await api("/v1/kpis", { rp_id: rp, kpi: "passkey_errors" });
  const mix = errors.kpis[0].totals.filter((p) => p.group === undefined).sort((a, b) => (b.value || 0) - (a.value || 0));
  barChart("error-mix", mix.map((p) => ({ label: p.key, value: p.value, text: `${pct(p.value)} (${p.numerator}/${p.denominator})` })));
  const rec = await api("/v1/kpis", { rp_id: rp, interval: "day", kpi: "recovery_per_1k_signins" });
  const series = byGroup(rec.kpis[0], 1000).map((s) => ({ ...s, name: "recovery starts / 1k sign-ins" }));
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null).sort((a, b) => a - b);
  const median = values.length ? values[Math.floor(values.length / 2)] : null;
  lineChart("recovery", series, num, median);
}

async function load() {
  const failure = document.getElementById("failure");
  failure.hidden = true;
  document.body.dataset.ready = "";
  try {
    const rpParam = params.get("rp_id") || "";
    const fromRollouts = await rollouts();
    const rp = rpParam || fromRollouts || "";
    document.getElementById("rp").value = rp;
    await funnels(rp);
    await kpis(rp);
    document.getElementById("auth").hidden = true;
  } catch (e) {
    if (e instanceof AuthNeeded) {
      document.getElementById("auth").hidden = false;
    } else {
      failure.textContent = "Could not load: " + e.message;
      failure.hidden = false;
    }
  }
  document.body.dataset.ready = "1";
}

document.getElementById("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("keyshift.token", token);
  load();
});

document.getElementById("scope").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const rp = document.getElementById("rp").value.trim();
  const url = new URL(location.href);
  if (rp) url.searchParams.set("rp_id", rp); else url.searchParams.delete("rp_id");
  location.href = url.toString();
});

load();
