// Lodestar console: the CSRF header on htmx requests, the score and
// activity charts and the live alert inbox. Everything works without it
// except the charts and live updates.
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (e) {
    var t = document.body.dataset.csrf;
    if (t) e.detail.headers["X-CSRF-Token"] = t;
  });

  function chart() {
    var el = document.getElementById("chart"), src = document.getElementById("chart-data");
    if (!el || !src || typeof uPlot === "undefined") return;
    var d = JSON.parse(src.textContent);
    var markers = function (u, list, color, dash) {
      var ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.lineWidth = 1.5 * devicePixelRatio;
      list.forEach(function (m) {
        var x = Math.round(u.valToPos(m.t, "x", true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
      });
      ctx.restore();
    };
    new uPlot({
      width: el.clientWidth || 800, height: 260,
      scales: { y: { range: [0, 100] } },
      series: [{}, { label: "health", stroke: "#1d4ed8", width: 2, points: { show: false } }],
      hooks: { draw: [function (u) {
        markers(u, d.versions, "#667085", [6, 4]);
        markers(u, d.alerts, "#c62828", []);
      }] },
    }, [d.t, d.s], el);
  }

  // activity draws the account's core events per day as bars.
  function activity() {
    var el = document.getElementById("activity"), src = document.getElementById("activity-data");
    if (!el || !src || typeof uPlot === "undefined") return;
    var d = JSON.parse(src.textContent);
    new uPlot({
      width: el.clientWidth || 800, height: 160,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      series: [{}, { label: "core events", stroke: "#1d4ed8", fill: "rgba(29,78,216,0.35)",
        paths: uPlot.paths.bars({ size: [0.8, 20] }), points: { show: false } }],
    }, [d.t, d.n], el);
  }

  function liveInbox() {
    var live = document.getElementById("live");
    if (!live || typeof EventSource === "undefined") return;
    var es = new EventSource("/alerts/stream"), timer = null;
    var refresh = function () {
      timer = null;
      var a = document.activeElement;
      // Never replace a form the user is filling in.
      if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA") || document.querySelector("#inbox details[open]")) {
        timer = setTimeout(refresh, 2000);
        return;
      }
      htmx.ajax("GET", location.pathname + location.search, { target: "#main", swap: "innerHTML" });
    };
    // The indicator is part of what a refresh replaces: look it up each time.
    var mark = function () {
      var el = document.getElementById("live");
      if (el) el.classList.toggle("on", es.readyState === EventSource.OPEN);
    };
    es.onopen = mark;
    es.onerror = mark;
    // After the settle: htmx gives a swapped element with the same id its old
    // attributes until then, and restores the new ones when it settles.
    document.addEventListener("htmx:afterSettle", mark);
    es.addEventListener("alert", function () { if (!timer) timer = setTimeout(refresh, 1000); });
    window.addEventListener("pagehide", function () { es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () { chart(); activity(); liveInbox(); });
})();
