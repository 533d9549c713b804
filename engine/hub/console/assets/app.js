// The hub console: polls the hub's API (edges, alerts, releases,
// commands) every 2 seconds through the console's api/ path and renders
// it with DOM calls only (no markup from data); the helpers are
// common.js's. The edge log is asked for on demand.
//
// A fleet is larger than a page of the API: the edges and the alerts are
// read page after page (the hub's Sluice-Next cursor), up to maxItems
// each, so that the summary counts every edge and every active alert;
// their tables show a bounded number of rows (200 more on demand), say
// how many of how many, and take a filter. Releases and commands show
// the newest and read older ones on demand, up to a bound.
"use strict";
(function () {
  const every = 2000;
  const { $, el, known, severities, levels, num, when, ago, row, fill, statusClass, poll, getJSON, getPage } = window.sluicePage;
  const api = "api/v1/";
  // pageSize is the limit= of every page asked; maxItems the most items
  // of one listing a poll reads (edges, alerts, a release's edges).
  const pageSize = 1000, maxItems = 10000;
  // The rows a table shows, and what "more" adds.
  const rowsStep = 200;
  let edgeRows = rowsStep, alertRows = rowsStep;
  // The newest releases and commands asked for, what "older" adds, and
  // the most.
  const releasesStep = 20, releasesMax = 500, commandsStep = 100, commandsMax = 1000;
  let releasesWanted = releasesStep, commandsWanted = commandsStep;
  let edgeFilter = "", edgeView = "all";
  // What the last poll read, to render again on a filter's change.
  let last = null;
  // commandsBack is when to ask for the commands again after the hub
  // answered that it has no such endpoint (404).
  let commandsBack = 0;
  let alertFilter = "all";
  let lastAlerts = [];
  let lastNow = new Date().toISOString();

  function edgeState(e) { return e.online ? "online" : "offline"; }

  // readAll reads the listing at path (with the query params) page after
  // page until it ends or max items are read; items picks a page's items
  // from its answer. It returns the items, whether the hub has more, and
  // the first page's answer.
  async function readAll(path, params, max, items) {
    items = items || ((b) => (Array.isArray(b) ? b : []));
    const out = [];
    let after = "", first = null;
    for (;;) {
      const q = new URLSearchParams(params);
      q.set("limit", String(Math.min(pageSize, max - out.length)));
      if (after) q.set("after", after);
      const p = await getPage(api + path + "?" + q.toString());
      if (first === null) first = p.body;
      for (const x of items(p.body)) out.push(x);
      if (!p.next) return { items: out, more: false, first };
      if (out.length >= max) return { items: out, more: true, first };
      if (p.next === after) throw new Error("the hub answered the same page cursor twice");
      after = p.next;
    }
  }

  // shownNote says how many rows of how many a table shows.
  function shownNote(shown, matching, total, what, more) {
    let s = num(shown) + " of " + num(matching) + " " + what + " shown";
    if (matching < total) s += " (" + num(total) + " in all)";
    if (more) s += "; the hub has more than the " + num(total) + " read";
    return s;
  }

  // edgeMatches says whether edge e passes the filter box (its id or a
  // label's key=value, value or key holds the text).
  function edgeMatches(id, labels) {
    if (!edgeFilter) return true;
    const f = edgeFilter.toLowerCase();
    if (id.toLowerCase().includes(f)) return true;
    for (const [k, v] of Object.entries(labels || {})) {
      if ((k + "=" + v).toLowerCase().includes(f)) return true;
    }
    return false;
  }

  // newestRelease maps each edge to its state in the newest release
  // naming it. A release lists its first 100 edges (edges_omitted the
  // rest) unless full holds all of them (by release id): an edge it may
  // hold unlisted has an unknown state in it, not that of an older one.
  function newestRelease(releases, full, edges) {
    const out = {};
    for (const r of releases) {
      const all = full[r.id];
      for (const e of all || r.edges || []) {
        if (!(e.edge in out)) out[e.edge] = { release: r, state: e.state, reason: e.reason || "" };
      }
      if (!all && r.edges_omitted) {
        for (const e of edges) {
          if (!(e.id in out)) out[e.id] = { release: r, state: "", reason: "" };
        }
        break;
      }
    }
    return out;
  }
  function stateClass(s) {
    if (s === "applied") return "up";
    if (s === "rejected" || s === "offline" || s === "superseded") return "down";
    return "";
  }

  let logEdgesKey = "";
  function renderEdges(edges, edgesMore, active, activeMore, releases, full, now) {
    const perEdge = {};
    for (const a of active) perEdge[a.edge] = (perEdge[a.edge] || 0) + 1;
    const rel = newestRelease(releases, full, edges);
    let online = 0, backlog = 0;
    for (const e of edges) {
      if (e.online) online++;
      backlog += Number(e.backlog || 0);
    }
    const matching = edges.filter((e) => {
      if (!edgeMatches(e.id, e.labels)) return false;
      if (edgeView === "offline") return !e.online;
      if (edgeView === "alerts") return (perEdge[e.id] || 0) > 0;
      if (edgeView === "backlog") return Number(e.backlog || 0) > 0;
      return true;
    });
    const shown = matching.slice(0, edgeRows);
    fill($("edges").tBodies[0], shown.map((e) => {
      const r = rel[e.id];
      let release = "";
      if (r) release = r.release.bundle + " v" + r.release.version + ": " + (r.state ? r.state + (r.reason ? " (" + r.reason + ")" : "") : "state not in the listing");
      const tr = row([
        { text: e.id, cls: "name" },
        { text: edgeState(e), cls: e.online ? "up" : "down" },
        { text: e.bundle ? e.bundle + " v" + e.version : "configured pipelines" },
        { text: e.software || "" },
        { text: release, cls: r ? "wrap " + stateClass(r.state) : "" },
        { text: num(e.backlog), cls: "num" },
        { text: e.last_seen ? ago(e.last_seen, now) : "never" },
        { text: num(perEdge[e.id] || 0), cls: "num" + (perEdge[e.id] ? " down" : "") },
      ]);
      tr.dataset.edge = e.id;
      tr.dataset.state = edgeState(e);
      tr.dataset.backlog = Number(e.backlog || 0);
      tr.dataset.alerts = perEdge[e.id] || 0;
      if (r && r.state) tr.dataset.release = r.state;
      tr.cells[0].addEventListener("click", () => { $("log-edge").value = e.id; });
      return tr;
    }));
    $("edge-count").textContent = num(edges.length) + (edgesMore ? "+" : "");
    $("no-edges").hidden = edges.length > 0;
    $("edges").hidden = shown.length === 0;
    $("edges-shown").textContent = edges.length ? shownNote(shown.length, matching.length, edges.length, "edges", edgesMore) : "";
    $("edges-more").hidden = shown.length >= matching.length;
    const s = $("summary");
    s.textContent = num(online) + " of " + num(edges.length) + (edgesMore ? "+" : "") + " edges online · backlog " + num(backlog) + " rows · " +
      num(active.length) + (activeMore ? "+" : "") + " active alerts";
    s.dataset.backlog = backlog;

    // The log form's edges, keeping the choice; built again only when
    // the edges or their states change.
    const sel = $("log-edge"), keep = sel.value;
    const key = edges.map((e) => e.id + (e.online ? "" : "!")).join("\n");
    if (logEdgesKey !== key) {
      fill(sel, edges.map((e) => { const o = el("option", "", e.id + (e.online ? "" : " (offline)")); o.value = e.id; return o; }));
      logEdgesKey = key;
      if (keep && edges.some((e) => e.id === keep)) sel.value = keep;
    }
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

  // edgeLabels maps the edges read to their labels, for the filter.
  let edgeLabels = {};

  function renderAlerts(alerts, now) {
    const chosen = alerts.filter((a) => alertFilter === "all" || a.state === alertFilter);
    const matching = chosen.filter((a) => edgeMatches(a.edge, edgeLabels[a.edge])).sort((a, b) => {
      if ((a.state === "raised") !== (b.state === "raised")) return a.state === "raised" ? -1 : 1;
      return new Date(b.changed_at) - new Date(a.changed_at);
    });
    const shown = matching.slice(0, alertRows);
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
    const nActive = last ? last.active.length : 0;
    $("alert-count").textContent = num(nActive) + (last && last.activeMore ? "+" : "");
    $("alert-count").classList.toggle("on", nActive > 0);
    $("alerts").hidden = shown.length === 0;
    $("no-alerts").hidden = shown.length > 0;
    $("alerts-shown").textContent = chosen.length ? shownNote(shown.length, matching.length, chosen.length, "alerts", last && last.alertsMore) : "";
    $("alerts-more").hidden = shown.length >= matching.length;
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

  // olderNote says how many of the newest are shown and offers older
  // ones, up to max.
  function olderNote(id, n, more, what, max) {
    $(id + "-shown").textContent = n && more ? "the newest " + num(n) + " " + what + " shown" +
      (n >= max ? "; the API lists older ones (GET /v1/" + id + "?after=)" : "") : "";
    $(id + "-more").hidden = !more || n >= max;
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
      const got = await readAll("commands", {}, commandsWanted);
      const cs = got.items;
      cs.sort((a, b) => new Date(b.created) - new Date(a.created));
      renderCommands(cs);
      olderNote("commands", cs.length, got.more, "commands", commandsMax);
    } catch (e) {
      if (e.status !== 404) throw e;
      // This hub keeps no command records: no panel.
      $("commands-section").hidden = true;
      commandsBack = Date.now() + 30000;
    }
  }

  // readAlerts reads the active alerts, and every alert unless only the
  // active ones are shown: all of them up to maxItems each.
  async function readAlerts() {
    if (alertFilter === "raised") {
      const act = await readAll("alerts", { active: "1" }, maxItems);
      return { alerts: act.items, alertsMore: act.more, active: act.items, activeMore: act.more };
    }
    const all = await readAll("alerts", {}, maxItems);
    if (!all.more) {
      return { alerts: all.items, alertsMore: false, active: all.items.filter((a) => a.state === "raised"), activeMore: false };
    }
    const act = await readAll("alerts", { active: "1" }, maxItems);
    return { alerts: all.items, alertsMore: true, active: act.items, activeMore: act.more };
  }

  // fullReleases reads every edge of the newest releases whose listing
  // leaves edges out (at most two, maxItems edges each): by release id.
  async function fullReleases(releases) {
    const out = {};
    for (const r of releases.filter((r) => r.edges_omitted > 0).slice(0, 2)) {
      const got = await readAll("releases/" + encodeURIComponent(r.id), {}, maxItems, (b) => (b && Array.isArray(b.edges) ? b.edges : []));
      if (!got.more) out[r.id] = got.items;
    }
    return out;
  }

  async function step() {
    const [edges, alerts, releases] = await Promise.all([
      readAll("edges", {}, maxItems), readAlerts(), readAll("releases", {}, releasesWanted),
    ]);
    const full = await fullReleases(releases.items);
    await commands();
    const now = new Date().toISOString();
    last = { edges: edges.items, edgesMore: edges.more, releases: releases.items, full, ...alerts };
    edgeLabels = {};
    for (const e of edges.items) edgeLabels[e.id] = e.labels;
    lastAlerts = alerts.alerts;
    lastNow = now;
    render();
    olderNote("releases", releases.items.length, releases.more, "releases", releasesMax);
    const open = lastAlerts.find((a) => alertKey(a) === openAlert);
    if (open) loadHistory(open);
    const up = $("updated");
    up.textContent = "updated " + when(now);
    up.classList.remove("stale");
  }

  // render shows what the last poll read.
  function render() {
    if (!last) return;
    renderEdges(last.edges, last.edgesMore, last.active, last.activeMore, last.releases, last.full, lastNow);
    renderAlerts(last.alerts, lastNow);
    renderReleases(last.releases);
  }

  // once runs step, or joins the one running; again polls at once (a
  // choice that reads more), its failure left to the next poll to show.
  let running = null;
  function once() {
    if (!running) running = step().finally(() => { running = null; });
    return running;
  }
  function again() { once().catch(() => {}); }

  $("edge-filter").addEventListener("input", (ev) => { edgeFilter = ev.target.value.trim(); edgeRows = rowsStep; alertRows = rowsStep; render(); });
  $("edge-view").addEventListener("change", (ev) => { edgeView = ev.target.value; edgeRows = rowsStep; render(); });
  $("edges-more").addEventListener("click", () => { edgeRows += rowsStep; render(); });
  $("alerts-more").addEventListener("click", () => { alertRows += rowsStep; renderAlerts(lastAlerts, lastNow); });
  $("releases-more").addEventListener("click", () => { releasesWanted = Math.min(releasesMax, releasesWanted + releasesStep); again(); });
  $("commands-more").addEventListener("click", () => { commandsWanted = Math.min(commandsMax, commandsWanted + commandsStep); again(); });

  for (const r of document.querySelectorAll('#alert-filter input')) {
    r.addEventListener("change", () => { alertFilter = r.value; alertRows = rowsStep; renderAlerts(lastAlerts, lastNow); again(); });
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

  poll(every, once);
})();
