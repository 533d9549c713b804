// What the pages share: DOM helpers (no markup from data), number, size,
// duration and time formats, and a poller. Loaded before the page's own
// script.
"use strict";
window.sluicePage = (function () {
  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // known returns v when it is one of allowed, else "": a class name
  // from data is one the page's style expects, never one that restyles
  // the page (a "minor" alert shown as "up").
  function known(v, allowed) { return allowed.includes(v) ? v : ""; }
  // Severities of alerts and levels of log records the pages style.
  const severities = ["critical", "major", "minor", "warning", "info"];
  const levels = ["DEBUG", "INFO", "WARN", "ERROR"];
  function num(n) { return Number(n || 0).toLocaleString("en-US"); }
  function rate(n) { n = Number(n || 0); return n >= 100 ? num(Math.round(n)) : n.toFixed(1); }
  function bytes(n) {
    n = Number(n || 0);
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
  }
  function dur(s) {
    if (s < 0) return "not draining";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function when(t) {
    if (!t) return "";
    const d = new Date(t);
    if (isNaN(d)) return "";
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function ago(t, now) {
    if (!t) return "";
    return dur(Math.max(0, (new Date(now) - new Date(t)) / 1000)) + " ago";
  }
  // row makes a table row of cells {text, cls}.
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) tr.appendChild(el("td", c.cls, c.text));
    return tr;
  }
  function fill(parent, nodes) { parent.replaceChildren(...nodes); }
  // statusClass colours a command's status.
  function statusClass(s) {
    if (s === "acked") return "up";
    if (s === "failed" || s === "rejected" || s === "timeout" || s === "expired") return "down";
    return "";
  }
  // poll calls step every `every` ms (and at once when the page becomes
  // visible again); step's failure is shown in #updated. A 401 reloads
  // the page (its login form).
  function poll(every, step) {
    let timer = 0;
    async function run() {
      try {
        await step();
      } catch (e) {
        if (e && e.status === 401) { location.reload(); return; }
        const up = $("updated");
        up.textContent = "no answer (" + (e && e.message) + "); retrying";
        up.classList.add("stale");
      }
      clearTimeout(timer);
      timer = setTimeout(run, every);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) { clearTimeout(timer); run(); }
    });
    run();
  }
  // getPage fetches a JSON answer and the cursor of the next page of a
  // listing (its Sluice-Next header, "" on the last one or for no
  // listing). An error carries the HTTP status.
  async function getPage(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try { const b = await r.json(); if (b && b.error) msg += ": " + b.error; } catch (e) { /* not JSON */ }
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return { body: await r.json(), next: r.headers.get("Sluice-Next") || "" };
  }
  // getJSON fetches a JSON answer; an error carries the HTTP status.
  async function getJSON(path) { return (await getPage(path)).body; }
  return { $, el, known, severities, levels, num, rate, bytes, dur, when, ago, row, fill, statusClass, poll, getJSON, getPage };
})();
