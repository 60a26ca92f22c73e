// The live fleet dashboard: polls /api/fleet (and the selected device) once a second and draws
// it with plain DOM and SVG. No framework, no network beyond the status server.
"use strict";

const POLL_MS = 1000;
const PALETTE = ["#3b82f6", "#8b5cf6", "#06b6d4", "#f59e0b", "#ef4444", "#10b981",
                 "#ec4899", "#84cc16", "#6366f1", "#14b8a6"];
const SVG = "http://www.w3.org/2000/svg";

const state = {
  classes: [],
  detector: false,  // whether the worker serves an anomaly detector (its scores are shown)
  selected: decodeURIComponent((location.hash.match(/device=([^&]+)/) || [])[1] || "") || null,
  updates: 0,
};

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const fmt = (n, digits = 0) => n === null || n === undefined ? "–"
  : Number(n).toLocaleString("en-US", {maximumFractionDigits: digits,
                                       minimumFractionDigits: digits});
const ms = (v) => fmt(v, v !== null && v < 10 ? 1 : 0);
const score = (v) => fmt(v, v !== null && v !== undefined && v < 0.1 ? 3 : 2);
const pct = (x) => x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`;
const colour = (name) => {
  const i = state.classes.indexOf(name);
  return i < 0 ? "#cbd5e1" : PALETTE[i % PALETTE.length];
};
const pretty = (name) => name ? name.toLowerCase().replace(/_/g, " ") : "–";
const chip = (name) => el("span", {class: "chip", style: `--c:${colour(name)}`, text: pretty(name)});

// -- the fleet ---------------------------------------------------------------------------------

function renderStats(s) {
  const card = (name, big, small) => {
    const c = $(`[data-stat="${name}"]`);
    $("b", c).textContent = big;
    $("small", c).textContent = small;
    return c;
  };
  card("devices", fmt(s.devices),
       `${fmt(s.worker_devices)} states held · ${fmt(s.samples)} samples`);
  const t = s.throughput;
  card("throughput", `${fmt(t.samples_per_s)} samples/s`,
       `${fmt(t.records_per_s)} records/s · over ${fmt(t.window_s)} s`)
    .dataset.value = t.samples_per_s;
  const peak = Math.max(1, ...t.history);
  $(".spark polyline").setAttribute("points", t.history
    .map((v, i) => `${(100 * i) / (t.history.length - 1)},${24 - (22 * v) / peak}`).join(" "));
  const lag = s.lag === null ? "" : ` · lag ${fmt(s.lag)} records`;
  card("latency", `${ms(s.latency_ms.p50)} / ${ms(s.latency_ms.p99)} ms`,
       `event to prediction${lag}`);
  const acc = s.accuracy;
  const versions = Object.entries(acc.by_version)
    .map(([v, a]) => `${v} ${pct(a.accuracy)}`).join(" · ");
  card("accuracy", pct(acc.overall), acc.scored ? versions : "no labels yet");
  const swap = s.model.swaps[0];
  const dead = Object.values(s.dead_letters).reduce((a, b) => a + b, 0);
  const model = card("model", s.model.version || "–",
                     (swap ? `swapped from ${swap.previous} (pause ${fmt(swap.pause_ms, 1)} ms)`
                           : "no swap yet") + ` · ${fmt(dead)} dead letters`);
  model.dataset.version = s.model.version || "";
}

function renderFleet(s) {
  const fleet = $("#fleet");
  const counts = s.by_activity;
  const peak = Math.max(1, ...Object.values(counts));
  fleet.replaceChildren(...s.classes.map((name) => el("div",
    {class: "bar", "data-activity": name, "data-count": counts[name]},
    el("span", {class: "label", text: pretty(name)}),
    el("span", {class: "track"}, el("span", {class: "fill",
      style: `width:${(100 * counts[name]) / peak}%;background:${colour(name)}`})),
    el("span", {class: "count", text: fmt(counts[name])}))));
  Object.assign(fleet.dataset, {devices: s.devices, samples: s.samples, batches: s.batches,
                                throughput: s.throughput.samples_per_s});
}

function renderDevices(s) {
  $("#devices tbody").replaceChildren(...s.device_list.map((d) => {
    const wrong = d.label && d.label !== d.activity;
    const row = el("tr", {"data-device": d.device,
                          class: d.device === state.selected ? "selected" : null},
      el("td", {class: "mono", text: d.device}),
      el("td", {}, chip(d.activity)),
      el("td", {class: "num", text: pct(d.confidence)}),
      el("td", {class: wrong ? "wrong" : null}, d.label ? chip(d.label) : el("span", {class: "muted", text: "–"})),
      el("td", {class: "num", text: d.anomaly === null ? "–" : fmt(d.anomaly, 2)}),
      el("td", {class: d.detector && d.detector.flagged ? "num flagged" : "num",
                text: d.detector ? score(d.detector.score) : "–"}),
      el("td", {class: "num mono", text: d.seq}),
      el("td", {class: "mono muted", text: d.version}));
    row.addEventListener("click", () => select(d.device));
    return row;
  }));
}

function renderEvents(s) {
  $("#changes").replaceChildren(...s.changes.slice(0, 8).map((c) => el("li",
    {"data-device": c.device},
    el("span", {class: "mono dev", text: c.device}),
    c.from ? chip(c.from) : el("span", {class: "muted", text: "start"}),
    el("span", {class: "arrow", text: "→"}), chip(c.to),
    el("span", {class: "muted right", text: `seq ${c.seq}`}))));
  const peak = Math.max(1e-9, ...s.anomalies.map((a) => a.score));
  $("#anomalies").replaceChildren(...s.anomalies.slice(0, 8).map((a) => el("li",
    {"data-device": a.device},
    el("span", {class: "mono dev", text: a.device}),
    el("span", {class: "track small"}, el("span", {class: "fill",
      style: `width:${(100 * a.score) / peak}%`})),
    el("span", {class: "num", text: fmt(a.score, 2)}), chip(a.activity),
    el("span", {class: "muted right", text: `seq ${a.seq}`}))));
  for (const li of document.querySelectorAll("#changes li, #anomalies li")) {
    li.addEventListener("click", () => select(li.dataset.device));
  }
  if (!s.changes.length) $("#changes").append(el("li", {class: "muted", text: "none yet"}));
  if (!s.anomalies.length) $("#anomalies").append(el("li", {class: "muted", text: "none"}));
}

function renderFlagged(s) {  // the anomaly detector's flagged windows, when there is one
  const det = s.detector;
  $("#flagged-panel").hidden = !det;
  if (!det) return;
  $("#flagged-summary").textContent = `${fmt(det.flagged_in_window)} in the last `
    + `${fmt(det.window_s)} s · threshold ${score(det.threshold)} · ${det.version}`;
  $("#flagged").replaceChildren(...det.recent.slice(0, 8).map((f) => el("li",
    {"data-device": f.device},
    el("span", {class: "mono dev", text: f.device}),
    el("span", {class: "num flagged", text: score(f.score)}),
    el("span", {class: "muted", text: `seq ${f.seq_first}–${f.seq_last}`}),
    el("span", {class: "mono muted right", text: f.version}))));
  for (const li of document.querySelectorAll("#flagged li")) {
    li.addEventListener("click", () => select(li.dataset.device));
  }
  if (!det.recent.length) $("#flagged").append(el("li", {class: "muted", text: "none"}));
}

// -- one device's timeline ---------------------------------------------------------------------

// The anomaly detector's window scores in a lane of their own, scaled to the highest score shown
// or the threshold (dashed); flagged windows are dots, with their sequence range as a tooltip.
function drawDetector(svg, det, x, t0, lane) {
  const {left, width, top, height} = lane;
  const shown = det.t_ms.map((_, i) => i)
    .filter((i) => det.t_ms[i] >= t0 && det.score[i] !== null);
  const peak = 1.1 * Math.max(det.threshold || 0, ...shown.map((i) => det.score[i])) || 1;
  const y = (v) => top + height - (height * Math.min(v, peak)) / peak;
  svg.append(el("svg:text", {x: 0, y: top + height / 2 + 4, class: "lane", text: "detector"}));
  svg.append(el("svg:rect", {x: left, y: top, width, height, class: "bg"}));
  if (det.threshold !== null) {
    const at = y(det.threshold);
    svg.append(el("svg:line", {x1: left, x2: left + width, y1: at, y2: at, class: "threshold"},
      el("svg:title", {text: `threshold ${score(det.threshold)} · ${det.model}`})));
    svg.append(el("svg:text", {x: left + width + 5, y: at + 4, class: "tick",
                               text: score(det.threshold)}));
  }
  const gaps = shown.slice(1).map((i, k) => det.t_ms[i] - det.t_ms[shown[k]])
    .sort((a, b) => a - b);
  const dt = gaps.length ? gaps[gaps.length >> 1] : Infinity;
  let run = [];  // a line per run of windows without a gap (none scored for 5 spacings)
  const end = () => {
    if (run.length) svg.append(el("svg:polyline", {class: "detector", points: run.join(" ")}));
    run = [];
  };
  shown.forEach((i, k) => {
    if (k && det.t_ms[i] - det.t_ms[shown[k - 1]] > 5 * dt) end();
    run.push(`${x(det.t_ms[i])},${y(det.score[i])}`);
  });
  end();
  for (const i of shown.filter((i) => det.flagged[i])) {
    svg.append(el("svg:circle", {cx: x(det.t_ms[i]), cy: y(det.score[i]), r: 3.5, class: "flagged"},
      el("svg:title", {text: `flagged · score ${score(det.score[i])} · `
                             + `seq ${det.seq_first[i]}–${det.seq_last[i]}`})));
  }
}

function renderTimeline(d) {
  const box = $("#timeline");
  const p = d.points;
  const n = p.t_ms.length;
  const det = d.detector;  // absent without a detector, or without scored windows yet
  $("#timeline-device").textContent = `${d.device} · ${n} predictions · ${d.version || ""}`
    + (det ? ` · ${det.t_ms.length} windows scored by ${det.model}` : "");
  Object.assign(box.dataset, {device: d.device, points: n, lastSeq: n ? p.seq[n - 1] : "",
                              windows: det ? det.t_ms.length : 0});
  if (!n) {
    box.replaceChildren(el("p", {class: "empty", text: "no timeline kept for this device yet"}));
    return;
  }
  const W = Math.max(320, box.clientWidth), left = 78, right = 30;
  const lane = 24, conf = 88, top = 18, band = det ? 56 : 0;
  const H = top + 2 * (lane + 8) + conf + (det ? band + 14 : 0) + 28;
  const gaps = p.t_ms.slice(1).map((t, i) => t - p.t_ms[i]).sort((a, b) => a - b);
  const dt = gaps.length ? gaps[gaps.length >> 1] : 1000;
  const t0 = p.t_ms[0] - dt, t1 = Math.max(p.t_ms[n - 1], ...(det ? det.t_ms : []));
  const x = (t) => left + ((W - left - right) * (t - t0)) / Math.max(1, t1 - t0);
  const svg = el("svg:svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`});

  const pieces = [];  // index ranges [a, b) without a gap (nothing emitted for 5 steps)
  for (let i = 1, a = 0; i <= n; i++) {
    if (i < n && p.t_ms[i] - p.t_ms[i - 1] <= 5 * dt) continue;
    pieces.push([a, i]);
    a = i;
  }
  const from = (i) => x(i && p.t_ms[i] - p.t_ms[i - 1] <= 5 * dt ? p.t_ms[i - 1] : p.t_ms[i] - dt);

  const drawLane = (values, y, title) => {
    svg.append(el("svg:text", {x: 0, y: y + lane / 2 + 4, class: "lane", text: title}));
    svg.append(el("svg:rect", {x: left, y, width: W - left - right, height: lane, class: "bg"}));
    for (const [a, b] of pieces) {
      for (let start = a, i = a + 1; i <= b; i++) {  // a rectangle per run of one activity
        if (i < b && values[i] === values[start]) continue;
        if (values[start] !== null) {
          const x0 = from(start);
          svg.append(el("svg:rect", {x: x0, y, width: Math.max(1, x(p.t_ms[i - 1]) - x0),
                                     height: lane, fill: colour(values[start])},
            el("svg:title", {text: `${pretty(values[start])} · seq ${p.seq[start]}–${p.seq[i - 1]}`})));
        }
        start = i;
      }
    }
  };
  drawLane(p.activity, top, "predicted");
  drawLane(p.label, top + lane + 8, "labelled");

  const cy = top + 2 * (lane + 8) + 4;
  const y = (v) => cy + conf - v * conf;
  for (const v of [0, 0.5, 1]) {
    svg.append(el("svg:line", {x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid"}));
    svg.append(el("svg:text", {x: W - right + 5, y: y(v) + 4, class: "tick", text: v.toFixed(1)}));
  }
  svg.append(el("svg:text", {x: 0, y: cy + 12, class: "lane", text: "confidence"}));
  const peak = Math.max(1e-9, ...p.anomaly.filter((a) => a !== null));
  const at = (i, v) => `${x(p.t_ms[i])},${y(v)}`;
  for (const [a, b] of pieces) {
    const idx = [...Array(b - a).keys()].map((k) => a + k);
    if (idx.some((i) => p.anomaly[i] !== null)) {
      const area = idx.map((i) => at(i, (0.95 * (p.anomaly[i] || 0)) / peak));
      svg.append(el("svg:polygon", {class: "anomaly",
                                    points: [at(a, 0), ...area, at(b - 1, 0)].join(" ")}));
    }
    svg.append(el("svg:polyline", {class: "confidence",
                                   points: idx.map((i) => at(i, p.confidence[i])).join(" ")}));
  }

  if (det) {
    drawDetector(svg, det, x, t0,
                 {left, width: W - left - right, top: cy + conf + 14, height: band});
  }

  for (let i = 1; i < n; i++) {  // model swaps
    if (p.version[i] === p.version[i - 1]) continue;
    const at = (x(p.t_ms[i - 1]) + x(p.t_ms[i])) / 2;
    svg.append(el("svg:line", {x1: at, x2: at, y1: 4, y2: cy + conf, class: "swap"}));
    svg.append(el("svg:text", {x: at + 4, y: 12, class: "tick", text: p.version[i]}));
  }
  const span = (t1 - t0) / 1000;
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((s) => span / s <= 6) || 1200;
  for (let s = 0; s <= span; s += step) {
    svg.append(el("svg:text", {x: x(t1 - s * 1000), y: H - 6, class: s ? "tick middle" : "tick end",
                               text: s ? `−${s} s` : "latest"}));
  }
  box.replaceChildren(svg);
}

function renderLegend() {
  const detector = state.detector ? [
    el("span", {class: "key detector", text: "detector score"}),
    el("span", {class: "key threshold", text: "detector threshold"}),
    el("span", {class: "key flagged", text: "flagged window"}),
  ] : [];
  $("#legend").replaceChildren(...state.classes.map((c) => chip(c)),
    el("span", {class: "key confidence", text: "confidence"}),
    el("span", {class: "key anomaly", text: "anomaly (next-step error, scaled)"}),
    ...detector,
    el("span", {class: "key swap", text: "model swap"}),
    el("span", {class: "key gap", text: "no prediction (held back or silent)"}));
}

// -- polling -----------------------------------------------------------------------------------

function select(device) {
  state.selected = device;
  history.replaceState(null, "", `#device=${encodeURIComponent(device)}`);
  for (const row of document.querySelectorAll("#devices tr[data-device]")) {
    row.classList.toggle("selected", row.dataset.device === device);
  }
  loadDevice();
}

async function getJSON(path) {
  const response = await fetch(path, {cache: "no-store"});
  return response.ok ? response.json() : null;
}

async function loadDevice() {
  if (!state.selected) return;
  const d = await getJSON(`/api/devices/${encodeURIComponent(state.selected)}`);
  if (d) renderTimeline(d);
  else state.selected = null;  // forgotten: fall back to the most recent one
}

function setStatus(ok, text) {
  const status = $("#status");
  status.dataset.state = ok ? "live" : "down";
  $("span", status).textContent = text;
}

async function tick() {
  try {
    const s = await getJSON("/api/fleet");
    if (!s) throw new Error("no fleet view");
    if (s.classes.join() !== state.classes.join() || Boolean(s.detector) !== state.detector) {
      state.classes = s.classes;
      state.detector = Boolean(s.detector);
      renderLegend();
    }
    if (!state.selected && s.device_list.length) state.selected = s.device_list[0].device;
    renderStats(s);
    renderFleet(s);
    renderDevices(s);
    renderEvents(s);
    renderFlagged(s);
    await loadDevice();
    state.updates += 1;
    document.body.dataset.updates = state.updates;
    setStatus(true, `live · batch ${fmt(s.batches)}`);
  } catch (err) {
    setStatus(false, `disconnected (${err.message})`);
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

tick();
