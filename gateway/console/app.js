// The web console: one page, five views (devices, chart, live, alerts, stats), all from the public API.
// The API key lives in this tab's sessionStorage and goes in the X-Api-Key header; the live stream's
// WebSocket cannot send headers, so it uses the subscription's short-lived connect token instead.
// Data is put on the page with textContent only (never innerHTML): device ids and messages are user input.
"use strict";

const API = "/api/v1/telemetry";
const KEY_ITEM = "telemetry.apiKey";
const DEVICES_ITEM = "telemetry.devices";
const RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000, "90d": 7776000 };
const LIVE_KEEP = 500; // points the live view keeps (table and chart)
const VIEWS = ["devices", "chart", "live", "alerts", "stats"];

const $ = (id) => document.getElementById(id);

// ---- small helpers ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

function showTime(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  return isNaN(t) ? String(iso) : t.toLocaleString();
}

function say(text, kind) {
  const box = $("message");
  box.textContent = text || "";
  box.className = kind || "";
  box.hidden = !text;
}

function knownDevices() {
  try { return JSON.parse(sessionStorage.getItem(DEVICES_ITEM)) || []; } catch { return []; }
}

function remember(device) {
  if (!device) return;
  const list = [device, ...knownDevices().filter((d) => d !== device)].slice(0, 50);
  sessionStorage.setItem(DEVICES_ITEM, JSON.stringify(list));
  const datalist = $("known-devices");
  datalist.replaceChildren(...list.map((d) => el("option", { value: d })));
}

// ---- the API -----------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; }
}

async function api(method, path, body) {
  const key = sessionStorage.getItem(KEY_ITEM);
  const headers = { "X-Api-Key": key || "", Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : response.statusText;
    if (response.status === 401 && path !== `${API}/alerts?limit=1`) signOut(`Signed out: ${detail}`);
    throw new ApiError(response.status, detail);
  }
  return data;
}

const enc = encodeURIComponent;

// Run an action; show its error instead of losing it.
async function attempt(action) {
  try { return await action(); } catch (err) { say(err.message, "error"); return undefined; }
}

// ---- sign-in and navigation --------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  try {
    await api("GET", `${API}/alerts?limit=1`); // any read: checks the key and its scope
  } catch (err) {
    sessionStorage.removeItem(KEY_ITEM);
    say(`Sign-in failed: ${err.message}`, "error");
    return;
  }
  $("api-key").value = "";
  say("");
  enter();
}

function signOut(reason) {
  live.stop();
  sessionStorage.removeItem(KEY_ITEM);
  $("nav").hidden = true;
  for (const v of VIEWS) $(`view-${v}`).hidden = true;
  $("view-sign-in").hidden = false;
  say(reason || "", reason ? "error" : "");
}

function enter() {
  $("view-sign-in").hidden = true;
  $("nav").hidden = false;
  show(location.hash.slice(1));
}

function show(view) {
  if (!VIEWS.includes(view)) view = "devices";
  say("");
  if (location.hash.slice(1) !== view) history.replaceState(null, "", `#${view}`);
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.view === view);
  if (view === "alerts") attempt(loadAlerts);
  if (view === "stats") attempt(loadStats);
  if (view === "live") live.resize();
  if (view === "chart") chart.resize();
}

function go(view) { location.hash = `#${view}`; }

// ---- charts (uPlot) ----------------------------------------------------------------------------------

class Plot {
  constructor(container, label) {
    this.container = container; this.label = label; this.plot = null; this.data = [[], []]; this.xRange = null;
  }

  width() { return Math.max(240, this.container.clientWidth || 0); }

  draw(times, values) {
    this.data = [times, values];
    this.container.dataset.count = String(times.length);
    this.container.dataset.last = times.length ? String(values[values.length - 1]) : "";
    if (this.container.offsetParent === null) { this.plot?.destroy(); this.plot = null; return; } // hidden: later
    if (this.plot) { this.plot.setData(this.data); return; }
    const opts = {
      width: this.width(), height: 260,
      series: [{}, { label: this.label, stroke: "#1769aa", width: 2, points: { show: true, size: 5 } }],
      axes: [{}, { size: 60 }],
      // The range asked for when there is one (gaps show as gaps); else the data's, a single point padded to a
      // minute (uPlot would stretch it over a year).
      scales: { x: { time: true, range: (u, min, max) => this.xRange || (u.data[0].length === 1 ? [u.data[0][0] - 30, u.data[0][0] + 30] : [min, max]) } },
      legend: { live: true },
    };
    this.plot = new uPlot(opts, this.data, this.container);
  }

  resize() {
    if (!this.plot) { if (this.data[0].length) this.draw(...this.data); return; }
    this.plot.setSize({ width: this.width(), height: 260 });
  }
}

// ---- devices -----------------------------------------------------------------------------------------

async function openDevice(event) {
  event?.preventDefault();
  const device = $("device-id").value.trim();
  if (!device) return;
  remember(device);
  const [metrics, stats] = await Promise.all([
    api("GET", `${API}/devices/${enc(device)}/metrics`),
    api("GET", `${API}/devices/${enc(device)}/stats`),
  ]);
  $("device-stats").replaceChildren(
    card("Metrics", stats.total_metrics), card("Active metrics", stats.active_metrics),
    card("Points", stats.data_points_count), card("Last 24 h", stats.last_24h_points),
    card("Alerts 24 h", stats.last_24h_alerts), card("Last update", showTime(stats.last_update)),
  );
  const body = $("device-metrics").tBodies[0];
  body.replaceChildren();
  if (!metrics.length) body.append(el("tr", {}, el("td", { colspan: 4, text: "No data for this device." })));
  for (const metric of metrics.slice(0, 200)) { // a JSON array of names
    const valueCell = el("td", { text: "…" });
    const timeCell = el("td", { text: "" });
    body.append(el("tr", { "data-metric": metric },
      el("td", { text: metric }), valueCell, timeCell,
      el("td", { class: "actions" },
        el("button", { type: "button", text: "Chart", onclick: () => openChart(device, metric) }),
        el("button", { type: "button", text: "Live", onclick: () => openLive(device, metric) })),
    ));
    api("GET", `${API}/devices/${enc(device)}/metrics/${enc(metric)}/latest?lookback=36500d`).then(
      (latest) => { valueCell.textContent = showValue(latest.value) + (latest.unit ? ` ${latest.unit}` : ""); timeCell.textContent = showTime(latest.timestamp); },
      () => { valueCell.textContent = "—"; },
    );
  }
}

function card(label, value) {
  return el("div", { class: "card" }, el("span", { class: "label", text: label }), el("strong", { text: showValue(value) }));
}

// ---- chart of a range ----------------------------------------------------------------------------------

const chart = {
  plot: null,
  resize() { this.plot?.resize(); },
};

function openChart(device, metric) {
  $("chart-device").value = device;
  $("chart-metric").value = metric;
  go("chart");
  attempt(loadChart);
}

// A custom range: raw points up to a day; beyond, an aggregate whose buckets line up with the rollups
// (interval a multiple of a minute or an hour, ends on its boundaries), so the API answers from them.
function customQuery(device, metric, start, end, aggregation) {
  const span = (end - start) / 1000;
  const body = { metrics: [metric], devices: [device], limit: 10000 };
  if (aggregation || span > 86400) {
    const interval = [60, 300, 900, 3600, 21600, 86400].find((s) => span / s <= 1000) || 86400;
    const unit = (interval % 3600 === 0 ? 3600 : 60) * 1000;
    start = new Date(Math.floor(start / unit) * unit);
    end = new Date(Math.ceil(end / unit) * unit);
    Object.assign(body, { aggregation: aggregation || "avg", interval });
  }
  return Object.assign(body, { start_time: start.toISOString(), end_time: end.toISOString() });
}

async function loadChart(event) {
  event?.preventDefault();
  const device = $("chart-device").value.trim();
  const metric = $("chart-metric").value.trim();
  if (!device || !metric) return;
  remember(device);
  const range = $("chart-range").value;
  const aggregation = $("chart-aggregation").value;
  let answer;
  if (range === "custom") {
    const start = new Date($("chart-start").value);
    const end = new Date($("chart-end").value);
    if (isNaN(start) || isNaN(end) || end <= start) { say("Choose a start before the end.", "error"); return; }
    answer = await api("POST", `${API}/query`, customQuery(device, metric, start, end, aggregation));
  } else {
    const query = new URLSearchParams({ time_range: range });
    if (aggregation) query.set("aggregation", aggregation);
    answer = await api("GET", `${API}/devices/${enc(device)}/metrics/${enc(metric)}/range?${query}`);
  }
  say("");
  const points = answer.data_points;
  const numeric = points.filter((p) => typeof p.value === "number");
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const how = answer.aggregation
    ? `${plural(answer.count, "bucket")} of ${answer.interval} s, ${answer.aggregation}`
    : `${plural(answer.count, "point")}, raw`;
  $("chart-summary").textContent = `${how} · source: ${answer.source}` +
    (answer.relative_error ? ` · relative error ≤ ${(answer.relative_error * 100).toFixed(1)} %` : "") +
    (numeric.length < points.length ? ` · ${points.length - numeric.length} non-numeric not charted` : "");
  $("chart-summary").dataset.source = answer.source;
  chart.plot = chart.plot || new Plot($("chart-plot"), metric);
  chart.plot.label = metric;
  chart.plot.plot?.destroy(); chart.plot.plot = null; // a new series: new axes
  chart.plot.xRange = [Date.parse(answer.start_time) / 1000, Date.parse(answer.end_time) / 1000];
  chart.plot.draw(numeric.map((p) => Date.parse(p.timestamp) / 1000), numeric.map((p) => p.value));
  const rows = points.slice(-200).reverse().map((p) =>
    el("tr", {}, el("td", { text: showTime(p.timestamp) }), el("td", { text: showValue(p.value) })));
  $("chart-points").tBodies[0].replaceChildren(...rows);
}

function syncCustom() {
  const custom = $("chart-range").value === "custom";
  for (const label of document.querySelectorAll("#chart-form .custom")) label.hidden = !custom;
  if (custom && !$("chart-end").value) {
    const local = (t) => new Date(t - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    $("chart-end").value = local(Date.now());
    $("chart-start").value = local(Date.now() - 86400000);
  }
}

// ---- live view over the WebSocket stream -------------------------------------------------------------

const live = {
  subscription: null, socket: null, since: null, points: [], history: [], plot: null, retries: 0, metric: "",

  async start(event) {
    event?.preventDefault();
    this.stop();
    const device = $("live-device").value.trim();
    const metric = $("live-metric").value.trim();
    if (!device) return;
    remember(device);
    const answer = await api("POST", `${API}/subscribe`, {
      device_ids: [device], metric_names: metric ? [metric] : [], max_frequency: 250,
    });
    this.subscription = answer;
    this.metric = metric;
    this.points = [];
    this.since = null;
    this.retries = 0;
    $("live-points").tBodies[0].replaceChildren();
    this.plot = this.plot || new Plot($("live-plot"), metric || "value");
    this.plot.label = metric || "value";
    this.plot.plot?.destroy(); this.plot.plot = null;
    this.plot.draw([], []);
    $("live-stop").disabled = false;
    this.connect(answer.connect_token);
    // The last hour for context, then the live points on top of it (the chart only; the table is live).
    this.history = [];
    if (metric) {
      const recent = await attempt(() => api("GET", `${API}/devices/${enc(device)}/metrics/${enc(metric)}/range?time_range=1h`));
      if (recent && this.subscription === answer) {
        this.history = recent.data_points.map((p) => ({ ...p, device_id: device, metric_name: metric }));
        this.redraw();
      }
    }
  },

  connect(token) {
    const sub = this.subscription;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ token });
    if (this.since !== null) query.set("since", String(this.since));
    const socket = new WebSocket(`${scheme}//${location.host}${sub.websocket_url}?${query}`);
    this.socket = socket;
    this.status("connecting");
    socket.onopen = () => { this.retries = 0; this.status("following"); };
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return; // stopped or replaced
      this.socket = null;
      if (event.code === 1000 || event.code === 4004 || event.code === 4003 || this.retries >= 5) {
        this.status(`stopped (${event.code} ${event.reason || ""})`);
        this.subscription = null;
        $("live-stop").disabled = true;
        return;
      }
      // 4001 (token expired), 1001 (gateway stopping), 1006, 1011: a new token, then resume after `since`.
      this.retries += 1;
      this.status(`reconnecting (${event.code})`);
      setTimeout(() => this.renew(sub), 500 * 2 ** this.retries);
    };
  },

  async renew(sub) {
    if (this.subscription !== sub) return;
    try {
      const fresh = await api("POST", `${API}/subscribe/${enc(sub.subscription_id)}/token`);
      if (this.subscription === sub) this.connect(fresh.connect_token);
    } catch (err) {
      this.status(`stopped: ${err.message}`);
      this.subscription = null;
    }
  },

  receive(message) {
    this.since = message.sequence_number;
    const rows = [];
    for (const p of message.data_points) {
      this.points.push(p);
      rows.push(el("tr", {}, el("td", { text: showTime(p.timestamp) }), el("td", { text: p.metric_name }),
        el("td", { text: showValue(p.value) })));
    }
    const body = $("live-points").tBodies[0];
    body.prepend(...rows.reverse());
    while (body.rows.length > LIVE_KEEP) body.deleteRow(-1);
    this.points = this.points.slice(-LIVE_KEEP);
    this.redraw();
    this.status("following");
  },

  redraw() {
    const charted = this.metric || this.points[0]?.metric_name;
    const seen = new Set(this.points.map((p) => Date.parse(p.timestamp)));
    const numeric = [...this.history.filter((p) => !seen.has(Date.parse(p.timestamp))), ...this.points]
      .filter((p) => p.metric_name === charted && typeof p.value === "number")
      .sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
    this.plot.label = charted;
    this.plot.draw(numeric.map((p) => Date.parse(p.timestamp) / 1000), numeric.map((p) => p.value));
  },

  status(state) {
    const sub = this.subscription;
    const node = $("live-status");
    node.dataset.state = state.split(" ")[0];
    const n = this.points.length;
    node.textContent = sub ? `${state} · ${n} point${n === 1 ? "" : "s"} received · last sequence ${this.since ?? "—"}` : state;
  },

  stop() {
    const sub = this.subscription;
    this.subscription = null;
    if (this.socket) { const s = this.socket; this.socket = null; s.close(1000); }
    if (sub) {
      // keepalive: the cancel still goes out when the tab closes.
      fetch(`${API}/subscribe/${enc(sub.subscription_id)}`, {
        method: "DELETE", keepalive: true, headers: { "X-Api-Key": sessionStorage.getItem(KEY_ITEM) || "" },
      }).catch(() => {});
      this.status("Not following.");
    }
    $("live-stop").disabled = true;
  },

  resize() { this.plot?.resize(); },
};

function openLive(device, metric) {
  $("live-device").value = device;
  $("live-metric").value = metric;
  go("live");
  attempt(() => live.start());
}

// ---- alerts and rules --------------------------------------------------------------------------------

async function loadAlerts(event) {
  event?.preventDefault();
  const status = $("alerts-status").value;
  const query = new URLSearchParams({ limit: "100" });
  if (status) query.set("status", status);
  const [alerts, rules] = await Promise.all([
    api("GET", `${API}/alerts?${query}`),
    api("GET", `${API}/alerts/rules?limit=100`),
  ]);
  $("alerts-summary").textContent =
    `${alerts.count} shown of ${alerts.total} · ${alerts.active_count} active · ${alerts.critical_count} critical open`;
  $("alerts-table").tBodies[0].replaceChildren(...alerts.alerts.map(alertRow));
  if (!alerts.alerts.length) $("alerts-table").tBodies[0].append(el("tr", {}, el("td", { colspan: 7, text: "No alerts." })));
  for (const a of alerts.alerts) remember(a.device_id);
  $("rules-table").tBodies[0].replaceChildren(...rules.rules.map(ruleRow));
}

function alertRow(a) {
  const act = (verb) => async (event) => {
    event.target.disabled = true;
    const updated = await attempt(() => api("PUT", `${API}/alerts/${enc(a.alert_id)}/${verb}`, {}));
    if (updated) { row.replaceWith(alertRow(updated)); say(`Alert ${verb === "acknowledge" ? "acknowledged" : "resolved"}.`); }
    else event.target.disabled = false;
  };
  const row = el("tr", { "data-alert-id": a.alert_id, class: `level-${a.level}` },
    el("td", { text: showTime(a.triggered_at) }), el("td", { text: a.level }),
    el("td", { class: "status", text: a.status }), el("td", { text: a.device_id }), el("td", { text: a.metric_name }),
    el("td", { text: a.message }),
    el("td", { class: "actions" },
      a.status === "active" ? el("button", { type: "button", class: "ack", text: "Acknowledge", onclick: act("acknowledge") }) : "",
      a.status !== "resolved" ? el("button", { type: "button", class: "resolve", text: "Resolve", onclick: act("resolve") }) : ""),
  );
  return row;
}

function ruleRow(r) {
  const toggle = el("input", { type: "checkbox", checked: r.enabled, "aria-label": `enable ${r.name}` });
  toggle.addEventListener("change", async () => {
    const done = await attempt(() => api("PUT", `${API}/alerts/rules/${enc(r.rule_id)}/enable`, { enabled: toggle.checked }));
    if (!done) toggle.checked = !toggle.checked;
  });
  return el("tr", { "data-rule-id": r.rule_id },
    el("td", { text: r.name }),
    el("td", { text: `${r.metric_name} ${r.condition} ${showValue(r.threshold_value)}` }),
    el("td", { text: r.level }), el("td", { text: String(r.total_triggers) }), el("td", {}, toggle));
}

// ---- service stats ---------------------------------------------------------------------------------

async function loadStats() {
  const s = await api("GET", `${API}/stats`);
  $("stats-cards").replaceChildren(
    card("Devices", s.total_devices), card("Active devices", s.active_devices), card("Metrics", s.total_metrics),
    card("Points", s.total_data_points), card("Points / s", s.points_per_second.toFixed(1)),
    card("Latency ms", s.avg_latency.toFixed(1)), card("Error rate", `${(s.error_rate * 100).toFixed(2)} %`),
    card("Storage", `${(s.storage_size / 1048576).toFixed(1)} MiB`), card("Alerts 24 h", s.last_24h_alerts),
  );
  const top = Math.max(1, ...s.data_by_hour.map((h) => h.points));
  $("stats-hours").replaceChildren(...s.data_by_hour.map((h) => {
    const bar = el("span", { class: "bar", title: `${showTime(h.hour)}: ${h.points} points` });
    bar.style.height = `${Math.round((h.points / top) * 100)}%`;
    return bar;
  }));
}

// ---- wiring ------------------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("device-form").addEventListener("submit", (e) => attempt(() => openDevice(e)));
  $("chart-form").addEventListener("submit", (e) => attempt(() => loadChart(e)));
  $("chart-range").addEventListener("change", syncCustom);
  $("live-form").addEventListener("submit", (e) => attempt(() => live.start(e)));
  $("live-stop").addEventListener("click", () => live.stop());
  $("alerts-form").addEventListener("submit", (e) => attempt(() => loadAlerts(e)));
  window.addEventListener("hashchange", () => { if (sessionStorage.getItem(KEY_ITEM)) show(location.hash.slice(1)); });
  window.addEventListener("pagehide", () => live.stop());
  let pending = 0;
  window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(() => { chart.resize(); live.resize(); }, 150); });
  syncCustom();
  remember(knownDevices()[0]);
  if (sessionStorage.getItem(KEY_ITEM)) enter();
  document.body.dataset.ready = "true";
}

wire();
