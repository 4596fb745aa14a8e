// Phoenix 95 dashboard: one EventSource, a snapshot then updates, rendered with the DOM API
// (text from webhooks is never parsed as HTML). No library: it must work offline.
"use strict";

const FEED_KEPT = 100;
const EQUITY_KEPT = 1440;
const SERVICES = ["brain", "risk", "execute", "notify"];
const SVG = "http://www.w3.org/2000/svg";

let view = null; // the last snapshot, with the updates merged in

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child ?? ""));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

// --- formatting ---------------------------------------------------------------------------

function price(value) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumSignificantDigits: 8 });
}

function usdt(value, signed) {
  if (value === null || value === undefined) return "–";
  const text = Number(value).toLocaleString("en-US", {
    minimumFractionDigits: 2, maximumFractionDigits: 2,
  });
  return (signed && value > 0 ? "+" : "") + text;
}

function percent(ratio, signed) {
  if (ratio === null || ratio === undefined) return "–";
  return (signed && ratio > 0 ? "+" : "") + (ratio * 100).toFixed(2) + "%";
}

function signClass(value) {
  if (value === null || value === undefined || value === 0) return "";
  return value > 0 ? "up" : "down";
}

function clock(iso) {
  return iso ? new Date(iso).toISOString().slice(11, 19) : "";
}

// --- merging the stream -------------------------------------------------------------------

function merge(update) {
  const feed = view.feed;
  const lastSeq = feed.length ? feed[feed.length - 1].seq : 0;
  for (const item of update.feed) {
    if (item.seq > lastSeq) feed.push(item);
  }
  view.feed = feed.slice(-FEED_KEPT);

  // The newest point follows the live value until its minute is over.
  const history = view.equity_history;
  for (const point of update.equity_history) {
    const last = history[history.length - 1];
    if (last && last[0] === point[0]) history[history.length - 1] = point;
    else if (!last || point[0] > last[0]) history.push(point);
  }
  view.equity_history = history.slice(-EQUITY_KEPT);

  for (const key of ["at", "services", "trading", "equity", "daily_pnl", "positions", "funnel"]) {
    view[key] = update[key];
  }
}

// --- rendering ----------------------------------------------------------------------------

function renderHeader() {
  const trading = $("trading");
  const state = view.trading.state || "unknown";
  trading.textContent = "trading: " + state;
  trading.className = "badge " + state;
  trading.title = view.trading.reason || "";

  const list = $("services");
  list.replaceChildren(...SERVICES.map((name) => {
    const health = view.services[name] || { status: "unknown", checks: {} };
    return el("li", {
      "data-service": name, "data-status": health.status,
      title: health.status + "\n" + Object.entries(health.checks || {})
        .map(([check, value]) => `${check}: ${value}`).join("\n"),
    }, el("span", { class: "dot " + health.status }), name);
  }));
}

function renderAccount() {
  $("equity").textContent = usdt(view.equity);
  const pnl = $("daily-pnl");
  pnl.textContent = usdt(view.daily_pnl, true);
  pnl.className = "value " + signClass(view.daily_pnl);
  $("position-count").textContent = String(view.positions.length);
  renderEquityChart();
}

function renderEquityChart() {
  const box = $("equity-chart");
  const width = box.clientWidth || 600;
  const height = box.clientHeight || 170;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const points = view.equity_history;
  if (points.length === 0) {
    const waiting = svg("text", { x: 8, y: height / 2, class: "waiting" });
    waiting.textContent = "waiting for the equity…";
    chart.append(waiting);
    box.replaceChildren(chart);
    return;
  }
  const pad = { left: 8, right: 78, top: 8, bottom: 18 };
  const times = points.map((p) => p[0]);
  const values = points.map((p) => p[1]);
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (high - low < 1e-9) { low -= 1; high += 1; } // a flat line sits in the middle
  const t0 = times[0];
  const t1 = Math.max(times[times.length - 1], t0 + 60);
  const x = (t) => pad.left + (t - t0) / (t1 - t0) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (high - v) / (high - low) * (height - pad.top - pad.bottom);

  const defs = svg("defs", {});
  const gradient = svg("linearGradient", { id: "equity-fill", x1: 0, y1: 0, x2: 0, y2: 1 });
  gradient.append(svg("stop", { offset: "0%", "stop-color": "#58a6ff", "stop-opacity": 0.35 }),
                  svg("stop", { offset: "100%", "stop-color": "#58a6ff", "stop-opacity": 0 }));
  defs.append(gradient);
  chart.append(defs);

  for (const value of [high, (high + low) / 2, low]) {
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value),
                               class: "grid-line" }));
    const label = svg("text", { x: width - pad.right + 6, y: y(value) + 3, class: "axis" });
    label.textContent = usdt(value);
    chart.append(label);
  }
  // A single point still draws: a level line across the chart.
  const drawn = points.length === 1 ? [[t0, values[0]], [t1, values[0]]] : points;
  const line = drawn.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`)
    .join(" ");
  const bottom = height - pad.bottom;
  chart.append(
    svg("path", { d: `${line} L${x(drawn[drawn.length - 1][0]).toFixed(1)},${bottom} ` +
                     `L${x(drawn[0][0]).toFixed(1)},${bottom} Z`, class: "area" }),
    svg("path", { d: line, class: "curve" }));
  for (const [t, anchor, at] of [[t0, "start", pad.left], [t1, "end", width - pad.right]]) {
    const label = svg("text", { x: at, y: height - 4, "text-anchor": anchor, class: "axis" });
    label.textContent = clock(new Date(t * 1000).toISOString()).slice(0, 5) + " UTC";
    chart.append(label);
  }
  box.replaceChildren(chart);
}

function barRow(label, count, total, kind) {
  const width = total > 0 ? Math.min(100, count / total * 100) : 0;
  return el("div", { class: "bar-row", "data-stage": label },
    el("span", {}, label),
    el("div", { class: "bar" }, el("span", { class: kind, style: `width:${width}%` })),
    el("span", { class: "count" }, count));
}

function renderFunnel() {
  const f = view.funnel;
  $("funnel-day").textContent = f.day;
  const top = Math.max(f.received, 1);
  const stage = (name, ...rows) => el("div", { class: "stage" },
    el("div", { class: "stage-name" }, name), ...rows);
  $("funnel").replaceChildren(
    stage("BRAIN received", barRow("signals", f.received, top, "")),
    stage("BRAIN decided",
      barRow("EXECUTE", f.decisions.EXECUTE, top, "good"),
      barRow("HOLD", f.decisions.HOLD, top, "hold"),
      barRow("REJECT", f.decisions.REJECT, top, "warn"),
      barRow("CLOSE", f.decisions.CLOSE, top, "")),
    stage("RISK verdicts",
      barRow("approved", f.approved, top, "good"),
      barRow("rejected", f.rejected, top, "bad")),
    stage("EXECUTE", barRow("filled", f.filled, top, "good")));
}

function distanceCell(p) {
  if (p.distance_to_liquidation === null) return el("td", {}, "–");
  // The share of the entry distance left: green at entry, red as it shrinks to nothing.
  const left = Math.max(0, Math.min(1, p.distance_to_liquidation / p.distance_at_entry));
  const colour = `hsl(${Math.round(left * 120)}, 70%, 50%)`;
  return el("td", { class: "liq-" + p.liquidation_level },
    el("div", { class: "distance" },
      el("div", { class: "bar" },
        el("span", { style: `width:${(left * 100).toFixed(0)}%;background:${colour}` })),
      el("span", { style: `color:${colour}` }, percent(p.distance_to_liquidation))));
}

function renderPositions() {
  const rows = view.positions.map((p) => el("tr", {
    "data-symbol": p.symbol, "data-position-id": p.position_id,
  },
    el("td", { class: "symbol" }, p.symbol),
    el("td", {}, el("span", { class: "side " + p.side }, p.side)),
    el("td", { class: "num" }, price(p.quantity)),
    el("td", { class: "num" }, price(p.entry_price)),
    el("td", { class: "num" }, price(p.mark_price)),
    el("td", { class: "num " + signClass(p.unrealized_pnl) }, usdt(p.unrealized_pnl, true)),
    el("td", { class: "num " + signClass(p.roe) }, percent(p.roe, true)),
    el("td", { class: "num" }, price(p.stop_loss)),
    el("td", { class: "num" }, price(p.take_profit)),
    el("td", { class: "num" }, price(p.liquidation_price)),
    distanceCell(p)));
  $("positions").replaceChildren(...rows);
  $("no-positions").hidden = rows.length > 0;
}

function renderFeed() {
  const items = view.feed.slice().reverse().map((item) => el("li", { class: item.level },
    el("span", { class: "time" }, clock(item.at)),
    el("span", { class: "kind" }, item.kind),
    el("span", { class: "sym" }, item.symbol || ""),
    el("span", { class: "text" }, item.text)));
  $("feed").replaceChildren(...items);
}

function render() {
  renderHeader();
  renderAccount();
  renderFunnel();
  renderPositions();
  renderFeed();
}

// --- the stream ---------------------------------------------------------------------------

function connect() {
  const connection = $("connection");
  const source = new EventSource("/events/stream");
  source.addEventListener("open", () => {
    connection.textContent = "live";
    connection.className = "connection live";
  });
  // EventSource reconnects by itself; the server then starts again with a snapshot.
  source.addEventListener("error", () => {
    connection.textContent = "reconnecting…";
    connection.className = "connection lost";
  });
  source.addEventListener("snapshot", (event) => {
    view = JSON.parse(event.data);
    render();
  });
  source.addEventListener("update", (event) => {
    if (view === null) return; // the snapshot always comes first
    merge(JSON.parse(event.data));
    render();
  });
}

window.addEventListener("resize", () => { if (view) renderEquityChart(); });
connect();
