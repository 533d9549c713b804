// The hub console: polls the hub's API (edges, alerts, releases,
// commands) every 2 seconds through the console's api/ path and renders
// it with DOM calls only (no markup from data); the helpers are
// common.js's. The edge log is asked for on demand.
"use strict";
(function () {
  const every = 2000;
  const { $, el, known, severities, levels, num, when, ago, row, fill, statusClass, poll, getJSON } = window.sluicePage;
  const api = "api/v1/";
  // commandsBack is when to ask for the commands again after the hub
  // answered that it has no such endpoint (404).
  let commandsBack = 0;
  let alertFilter = "all";
  let lastAlerts = [];
  let lastNow = new Date().toISOString();

  function edgeState(e) { return e.online ? "online" : "offline"; }

  // newestRelease maps each edge to its state in the newest release
  // naming it.
  function newestRelease(releases) {
    const out = {};
    for (const r of releases) {
      for (const e of r.edges || []) {
        if (!(e.edge in out)) out[e.edge] = { release: r, state: e.state, reason: e.reason || "" };
      }
    }
    return out;
  }
  function stateClass(s) {
    if (s === "applied") return "up";
    if (s === "rejected" || s === "offline" || s === "superseded") return "down";
    return "";
  }

  function renderEdges(edges, alerts, releases, now) {
    const active = {};
    for (const a of alerts) if (a.state === "raised") active[a.edge] = (active[a.edge] || 0) + 1;
    const rel = newestRelease(releases);
    let online = 0, backlog = 0;
    fill($("edges").tBodies[0], edges.map((e) => {
      if (e.online) online++;
      backlog += Number(e.backlog || 0);
      const r = rel[e.id];
      const tr = row([
        { text: e.id, cls: "name" },
        { text: edgeState(e), cls: e.online ? "up" : "down" },
        { text: e.bundle ? e.bundle + " v" + e.version : "configured pipelines" },
        { text: e.software || "" },
        { text: r ? r.release.bundle + " v" + r.release.version + ": " + r.state + (r.reason ? " (" + r.reason + ")" : "") : "", cls: r ? "wrap " + stateClass(r.state) : "" },
        { text: num(e.backlog), cls: "num" },
        { text: e.last_seen ? ago(e.last_seen, now) : "never" },
        { text: num(active[e.id] || 0), cls: "num" + (active[e.id] ? " down" : "") },
      ]);
      tr.dataset.edge = e.id;
      tr.dataset.state = edgeState(e);
      tr.dataset.backlog = Number(e.backlog || 0);
      tr.dataset.alerts = active[e.id] || 0;
      if (r) tr.dataset.release = r.state;
      tr.cells[0].addEventListener("click", () => { $("log-edge").value = e.id; });
      return tr;
    }));
    $("edge-count").textContent = edges.length;
    $("no-edges").hidden = edges.length > 0;
    $("edges").hidden = edges.length === 0;
    const nActive = alerts.filter((a) => a.state === "raised").length;
    const s = $("summary");
    s.textContent = online + " of " + edges.length + " edges online · backlog " + num(backlog) + " rows · " + nActive + " active alerts";
    s.dataset.backlog = backlog;

    // The log form's edges, keeping the choice.
    const sel = $("log-edge"), keep = sel.value;
    fill(sel, edges.map((e) => { const o = el("option", "", e.id + (e.online ? "" : " (offline)")); o.value = e.id; return o; }));
    if (keep && edges.some((e) => e.id === keep)) sel.value = keep;
  }

  // openAlert is the alert whose history is shown under its row (edge and
  // id), history its recorded changes as the hub last answered them
  // (null while asked).
  let openAlert = "";
  let history = null;
  function alertKey(a) { return a.edge + "\n" + a.id; }

  // historyRow is the detail row of alert a: its newest changes.
  function historyRow(a) {
    const tr = el("tr", "history");
    const td = el("td");
    td.colSpan = 9;
    if (history === null) {
      td.appendChild(el("span", "muted", "asking the hub for the history…"));
    } else if (history.error) {
      td.appendChild(el("span", "down", "the history could not be read: " + history.error));
    } else if (history.items.length === 0) {
      td.appendChild(el("span", "muted", "no change recorded"));
    } else {
      td.appendChild(el("span", "muted", "newest " + history.items.length + " changes of " + a.id + " on " + a.edge + ":"));
      const ul = el("ul", "history");
      for (const t of history.items) {
        const value = t.value === null || t.value === undefined ? "" : " · value " + t.value;
        ul.appendChild(el("li", known(t.state, ["raised", "cleared"]), when(t.time) + " " + (t.state === "raised" ? "raised" : "cleared") + value));
      }
      td.appendChild(ul);
    }
    tr.appendChild(td);
    tr.dataset.edge = a.edge;
    return tr;
  }

  // loadHistory asks for the newest changes of alert a.
  async function loadHistory(a) {
    const key = alertKey(a);
    try {
      const q = new URLSearchParams({ edge: a.edge, limit: "50" });
      const items = await getJSON(api + "alerts/" + encodeURIComponent(a.id) + "/history?" + q.toString());
      if (openAlert === key) history = { items: Array.isArray(items) ? items : [] };
    } catch (e) {
      if (e.status === 401) { location.reload(); return; }
      if (openAlert === key) history = { error: e.message, items: [] };
    }
    if (openAlert === key) renderAlerts(lastAlerts, lastNow);
  }

  function toggleHistory(a) {
    const key = alertKey(a);
    history = null;
    openAlert = openAlert === key ? "" : key;
    renderAlerts(lastAlerts, lastNow);
    if (openAlert) loadHistory(a);
  }

  function renderAlerts(alerts, now) {
    const order = alerts.slice().sort((a, b) => {
      if ((a.state === "raised") !== (b.state === "raised")) return a.state === "raised" ? -1 : 1;
      return new Date(b.changed_at) - new Date(a.changed_at);
    });
    const shown = order.filter((a) => alertFilter === "all" || a.state === alertFilter);
    fill($("alerts").tBodies[0], shown.flatMap((a) => {
      const tr = row([
        { text: a.state === "raised" ? "active" : a.state },
        { text: a.severity, cls: "sev-" + known(a.severity, severities) },
        { text: a.edge }, { text: a.asset }, { text: a.rule }, { text: a.type },
        { text: a.content, cls: "wrap" },
        { text: when(a.occur_time) + " (" + ago(a.occur_time, now) + ")" },
        { text: a.recover_time ? when(a.recover_time) : "" },
      ]);
      tr.className = known(a.state, ["raised", "cleared"]);
      tr.dataset.edge = a.edge;
      tr.dataset.rule = a.rule;
      tr.dataset.state = a.state;
      tr.classList.add("clickable");
      tr.title = "show or hide the alert's history";
      tr.addEventListener("click", () => toggleHistory(a));
      if (alertKey(a) !== openAlert) return [tr];
      tr.classList.add("open");
      return [tr, historyRow(a)];
    }));
    const nActive = alerts.filter((a) => a.state === "raised").length;
    $("alert-count").textContent = nActive;
    $("alert-count").classList.toggle("on", nActive > 0);
    $("alerts").hidden = shown.length === 0;
    $("no-alerts").hidden = shown.length > 0;
  }

  function renderReleases(releases) {
    fill($("releases").tBodies[0], releases.map((r) => {
      const states = el("td", "states wrap");
      for (const e of r.edges || []) {
        const sp = el("span", stateClass(e.state), e.edge + ": " + e.state + (e.reason ? " (" + e.reason + ")" : ""));
        sp.dataset.edge = e.edge;
        sp.dataset.state = e.state;
        states.appendChild(sp);
      }
      if (r.edges_omitted) states.appendChild(el("span", "muted", "and " + r.edges_omitted + " more"));
      const tr = row([{ text: r.id }, { text: r.bundle + " v" + r.version }, { text: r.target }, { text: when(r.released_at) }]);
      tr.appendChild(states);
      tr.dataset.release = r.id;
      return tr;
    }));
    $("releases").hidden = releases.length === 0;
    $("no-releases").hidden = releases.length > 0;
  }

  function renderCommands(cs) {
    $("commands-section").hidden = false;
    fill($("commands").tBodies[0], cs.map((c) => {
      const tr = row([
        { text: when(c.created) }, { text: c.edge },
        { text: (c.product ? c.product + "/" : "") + c.asset }, { text: c.service },
        { text: c.inputs && Object.keys(c.inputs).length ? JSON.stringify(c.inputs) : "", cls: "code" },
        { text: (c.origin || "") + (c.class ? " (" + c.class + ")" : "") },
        { text: c.status, cls: statusClass(c.status) }, { text: c.reason || "", cls: "wrap" },
        { text: c.expiry ? when(c.expiry) : "" }, { text: when(c.updated) },
      ]);
      tr.dataset.id = c.id;
      tr.dataset.status = c.status;
      return tr;
    }));
    $("commands").hidden = cs.length === 0;
    $("no-commands").hidden = cs.length > 0;
  }

  async function commands() {
    if (Date.now() < commandsBack) return;
    try {
      const cs = await getJSON(api + "commands?limit=100");
      cs.sort((a, b) => new Date(b.created) - new Date(a.created));
      renderCommands(cs);
    } catch (e) {
      if (e.status !== 404) throw e;
      // This hub keeps no command records: no panel.
      $("commands-section").hidden = true;
      commandsBack = Date.now() + 30000;
    }
  }

  async function step() {
    const [edges, alerts, releases] = await Promise.all([
      getJSON(api + "edges"), getJSON(api + "alerts?limit=500"), getJSON(api + "releases?limit=20"),
    ]);
    await commands();
    const now = new Date().toISOString();
    lastAlerts = alerts;
    lastNow = now;
    renderEdges(edges, alerts, releases, now);
    renderAlerts(alerts, now);
    renderReleases(releases);
    const open = alerts.find((a) => alertKey(a) === openAlert);
    if (open) loadHistory(open);
    const up = $("updated");
    up.textContent = "updated " + when(now);
    up.classList.remove("stale");
  }

  for (const r of document.querySelectorAll('#alert-filter input')) {
    r.addEventListener("change", () => { alertFilter = r.value; renderAlerts(lastAlerts, lastNow); });
  }

  // logLine makes one record of an edge's log a line of text.
  function logLine(rec) {
    const parts = [when(rec.time), rec.level, rec.msg];
    for (const [k, v] of Object.entries(rec)) {
      if (k === "time" || k === "level" || k === "msg") continue;
      parts.push(k + "=" + (typeof v === "string" ? v : JSON.stringify(v)));
    }
    return parts.filter((p) => p !== undefined && p !== "").join(" ");
  }

  $("log-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const edge = $("log-edge").value;
    if (!edge) return;
    const q = new URLSearchParams({ level: $("log-level").value, limit: "200" });
    const since = $("log-since").value;
    if (since) q.set("since", new Date(Date.now() - Number(since) * 1000).toISOString());
    const grep = $("log-grep").value.trim();
    if (grep) q.set("grep", grep);
    const note = $("log-note");
    note.textContent = "asking " + edge + "…";
    note.classList.remove("down");
    $("log-run").disabled = true;
    try {
      const a = await getJSON(api + "edges/" + encodeURIComponent(edge) + "/logs?" + q.toString());
      const recs = (a.records || []).slice().reverse();
      fill($("log"), recs.map((r) => {
        const li = el("li", known(String(r.level || ""), levels), logLine(r));
        return li;
      }));
      $("log").dataset.edge = edge;
      note.textContent = recs.length + (recs.length === 1 ? " record of " : " records of ") + edge + ", newest first" + (a.truncated ? " (older ones left out)" : "");
    } catch (e) {
      if (e.status === 401) { location.reload(); return; }
      fill($("log"), []);
      note.textContent = e.status === 503 ? edge + " is not connected: its log cannot be asked now" : "the query failed: " + e.message;
      note.classList.add("down");
    } finally {
      $("log-run").disabled = false;
    }
  });

  poll(every, step);
})();
