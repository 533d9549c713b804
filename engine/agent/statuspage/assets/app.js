// The edge status page: polls the snapshot every 2 seconds and renders it
// with DOM calls only (no markup from data); the helpers are common.js's.
"use strict";
(function () {
  const every = 2000;
  const { $, el, known, severities, levels, num, rate, bytes, dur, when, ago, row, fill, statusClass, poll, getJSON } = window.sluicePage;

  function render(v) {
    $("edge").textContent = v.edge;
    document.title = "Sluice edge " + v.edge;
    $("release").textContent = v.bundle ? "Release " + v.bundle + " v" + v.version : "No release applied (configured pipelines)";
    if (v.software) $("release").textContent += " · sluice " + v.software;
    const up = $("updated");
    up.textContent = "updated " + when(v.time);
    up.classList.remove("stale");

    // Alerts.
    const alerts = v.alerts || [];
    $("alert-count").textContent = alerts.length;
    $("alert-count").classList.toggle("on", alerts.length > 0);
    fill($("alerts"), alerts.map((a) => {
      const li = el("li", known(a.severity, severities));
      li.dataset.name = a.name;
      li.dataset.asset = a.asset;
      li.appendChild(el("div", "name", a.name + " · " + a.asset));
      li.appendChild(el("div", "", a.message));
      li.appendChild(el("div", "muted", a.type + ", " + a.severity + ", since " + when(a.since)));
      return li;
    }));
    $("no-alerts").hidden = alerts.length > 0;

    // Sinks.
    const sinks = v.sinks || [];
    let total = 0, totalBytes = 0;
    fill($("sinks").tBodies[0], sinks.map((s) => {
      total += s.backlog_rows; totalBytes += s.backlog_bytes;
      const tr = row([
        { text: s.pipeline + "/" + s.sink + " (" + s.type + ")" },
        { text: s.link_up ? "up" : "down", cls: s.link_up ? "up" : "down" },
        { text: num(s.backlog_rows), cls: "num" },
        { text: bytes(s.backlog_bytes), cls: "num" },
        { text: s.oldest_event_time ? when(s.oldest_event_time) + " (" + ago(s.oldest_event_time, v.time) + ")" : "" },
        { text: rate(s.drain_rows_per_second), cls: "num" },
        { text: dur(s.eta_seconds), cls: "num" },
        { text: num(s.dead_letter_rows), cls: "num" },
      ]);
      tr.dataset.sink = s.pipeline + "/" + s.sink;
      return tr;
    }));
    $("backlog-total").textContent = num(total) + " rows (" + bytes(totalBytes) + ")";
    $("backlog-total").dataset.rows = total;
    $("sinks").hidden = sinks.length === 0;
    $("no-sinks").hidden = sinks.length > 0;

    // Pipelines as their steps in order, each naming its inputs.
    const ps = v.pipelines || [];
    fill($("pipelines"), ps.map((p) => {
      const d = el("div", "pipeline");
      const h = el("h3", "", p.name + " — " + p.state);
      d.appendChild(h);
      if (p.err) d.appendChild(el("p", "down", p.err));
      const steps = el("div", "steps");
      for (const s of p.steps || []) {
        const b = el("div", "step k-" + known(s.kind, ["source", "operator", "step", "sink"]));
        b.appendChild(el("div", "", s.name));
        b.appendChild(el("div", "kind", s.kind + " · " + s.type));
        if (s.inputs && s.inputs.length) b.appendChild(el("div", "from", "← " + s.inputs.join(", ")));
        b.appendChild(el("div", "", rate(s.rows_per_sec) + " rows/s"));
        b.appendChild(el("div", "kind", num(s.rows) + " rows · " + num(s.late) + " late · " + num(s.errors) + " errors"));
        steps.appendChild(b);
      }
      d.appendChild(steps);
      return d;
    }));
    $("no-pipelines").hidden = ps.length > 0;

    // Applies.
    const ap = v.applies || [];
    fill($("applies").tBodies[0], ap.map((a) => row([
      { text: when(a.time) }, { text: a.bundle }, { text: "v" + a.version, cls: "num" },
      { text: a.outcome, cls: a.outcome === "applied" ? "up" : (a.outcome === "rejected" ? "down" : "") }, { text: a.reason || "" },
    ])));
    $("applies").hidden = ap.length === 0;
    $("pending").textContent = (v.pending && v.pending.length) ? "Staged for the next start: " + v.pending.join(", ") : (ap.length ? "" : "No bundle applied yet.");

    // Commands of the arbiter (a control section).
    const cs = v.commands || [];
    $("commands-section").hidden = !v.control;
    fill($("commands").tBodies[0], cs.map((c) => {
      const tr = row([
        { text: when(c.created) }, { text: (c.product ? c.product + "/" : "") + c.asset }, { text: c.service },
        { text: c.inputs || "", cls: "code" }, { text: c.origin + (c.class ? " (" + c.class + ")" : "") },
        { text: c.status, cls: statusClass(c.status) }, { text: c.reason || "" }, { text: when(c.updated) },
      ]);
      tr.dataset.id = c.id;
      tr.dataset.status = c.status;
      return tr;
    }));
    $("commands").hidden = cs.length === 0;
    $("no-commands").hidden = cs.length > 0;

    // Warnings.
    const ws = v.warnings || [];
    fill($("warnings"), ws.map((w) => el("li", known(w.level, levels), w.text)));
    $("warnings-note").textContent = v.warnings_note || (ws.length ? "" : "No warnings in the last hour.");
  }

  poll(every, async () => render(await getJSON("data")));
})();
