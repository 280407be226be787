// Warrant console: live updates. Served from the binary; no inline script anywhere
// (the Content-Security-Policy forbids it). Untrusted text is set with textContent only.
"use strict";

(function () {
  function cell(row, text, code) {
    const td = document.createElement("td");
    if (code) {
      const c = document.createElement("code");
      c.textContent = text || "";
      td.appendChild(c);
    } else {
      td.textContent = text || "";
    }
    row.appendChild(td);
    return td;
  }

  function badge(word) {
    const span = document.createElement("span");
    span.className = "badge " + word;
    span.textContent = word;
    return span;
  }

  function stamp(secs) {
    return new Date(secs * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  // The live decisions table: new rows on top, at most data-max rows kept.
  function liveDecisions(table) {
    const body = table.tBodies[0];
    const max = parseInt(table.dataset.max, 10) || 200;
    const want = {
      agent: table.dataset.agent || "",
      human: table.dataset.human || "",
      decision: table.dataset.decision || "",
      action: table.dataset.action || "",
    };
    const status = document.getElementById("live-status");
    let url = "/v1/events?kind=decision";
    if (want.agent) url += "&agent=" + encodeURIComponent(want.agent);
    const source = new EventSource(url);
    let seen = 0;
    source.addEventListener("open", function () {
      if (status) status.textContent = "Live: new decisions appear at the top (the newest " + max + " are kept).";
    });
    source.addEventListener("error", function () {
      if (status) status.textContent = "The live stream is disconnected; retrying…";
    });
    source.addEventListener("lagged", function (e) {
      if (status) status.textContent = "Some decisions were skipped (the page fell behind).";
    });
    source.addEventListener("decision", function (e) {
      let ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      const d = ev.data || {};
      if (want.decision && d.decision !== want.decision) return;
      if (want.human && d.human !== want.human) return;
      if (want.action && d.action !== want.action) return;
      const row = document.createElement("tr");
      row.className = "fresh";
      const when = cell(row, "");
      const id = typeof d.decision_id === "string" ? d.decision_id : "";
      if (/^dec_\d+$/.test(id)) {
        const a = document.createElement("a");
        a.href = "/console/decisions/" + id;
        a.textContent = stamp(ev.at);
        when.appendChild(a);
      } else {
        when.textContent = stamp(ev.at);
      }
      const td = document.createElement("td");
      td.appendChild(badge(String(d.decision || "")));
      row.appendChild(td);
      cell(row, ev.agent, true);
      cell(row, d.human, true);
      cell(row, d.action, true);
      cell(row, d.resource, true);
      cell(row, Array.isArray(d.reasons) && d.reasons.length ? String(d.reasons[0]) : String(d.code || ""));
      body.insertBefore(row, body.firstChild);
      while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
      seen += 1;
      table.dataset.seen = String(seen);
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // The overview: decisions per second over the last minute, and the split.
  function liveOverview() {
    const rate = document.getElementById("rate");
    const line = document.querySelector("#rate-chart polyline");
    const slots = new Array(60).fill(0);
    let current = 0;
    const source = new EventSource("/v1/events?kind=decision");
    source.addEventListener("decision", function (e) {
      current += 1;
      let ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      const out = document.getElementById("split-" + ((ev.data || {}).decision || ""));
      if (out) out.textContent = String((parseInt(out.textContent, 10) || 0) + 1);
    });
    setInterval(function () {
      slots.push(current);
      slots.shift();
      current = 0;
      if (rate) rate.textContent = String(slots[slots.length - 1]);
      if (line) {
        const max = Math.max(1, ...slots);
        line.setAttribute("points", slots.map(function (v, i) {
          return (i * 240 / 59).toFixed(1) + "," + (46 - (v / max) * 44).toFixed(1);
        }).join(" "));
      }
    }, 1000);
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // A server-rendered fragment that follows a change (an approval's status): fetched
  // again every two seconds until it is final.
  function poll(box) {
    const url = box.dataset.poll;
    const timer = setInterval(function () {
      fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
        if (!r.ok) { clearInterval(timer); return null; }
        return r.text();
      }).then(function (html) {
        if (html === null || html === undefined) return;
        // The fragment is the server's own escaped markup.
        box.innerHTML = html;
        const status = box.querySelector(".approval-status .badge");
        const word = status ? status.textContent : "";
        if (word === "used" || word === "rejected" || word === "expired") clearInterval(timer);
      }).catch(function () {});
    }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-live=decisions]").forEach(liveDecisions);
    if (document.querySelector("[data-live=overview]")) liveOverview();
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
