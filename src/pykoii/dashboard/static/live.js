// Live updates for pages that already work without JavaScript: countdowns tick every 250 ms, and
// server-sent events from <body data-live> refresh <main id="live"> (at most once a second).
(function () {
  "use strict";
  function format(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    if (ms < 1000 && ms > 0) return (Math.max(0, Math.round(ms))) + " ms";
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function armCountdowns(root) {
    var now = Date.now();
    root.querySelectorAll("[data-countdown-ms]").forEach(function (el) {
      el.dataset.deadline = String(now + Number(el.dataset.countdownMs));
      el.removeAttribute("data-countdown-ms");
    });
  }
  function tick() {
    var now = Date.now(), expired = false;
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Number(el.dataset.deadline) - now;
      el.textContent = left > 0 ? format(left) : "now";
      if (left <= -300) expired = true;
    });
    if (expired) schedule();
  }
  var timer = null, last = 0, busy = false;
  function schedule() {
    if (timer) return;
    var wait = Math.max(0, 1000 - (Date.now() - last));
    timer = setTimeout(refresh, wait);
  }
  function refresh() {
    timer = null;
    var main = document.getElementById("live");
    if (!main || busy) return;
    var active = document.activeElement;
    if (active && main.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) { schedule(); return; }
    busy = true; last = Date.now();
    fetch(location.href, { headers: { "X-Requested-With": "live" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) { main.innerHTML = fresh.innerHTML; armCountdowns(main); }
        var status = doc.getElementById("live-status"), mine = document.getElementById("live-status");
        if (status && mine) mine.innerHTML = status.innerHTML;
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  function appendLog(data) {
    var pre = document.getElementById("logs");
    if (!pre) return;
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent += data.text;
    if (pre.textContent.length > 200000) pre.textContent = pre.textContent.slice(-150000);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  function connect(url, onEvent) {
    if (!url || !window.EventSource) return;
    var source = new EventSource(url), status = document.getElementById("live-status");
    source.onopen = function () { if (status) status.classList.add("connected"); };
    source.onerror = function () { if (status) status.classList.remove("connected"); };
    ["tx", "phase", "payout", "change", "slot", "log"].forEach(function (kind) {
      source.addEventListener(kind, function (e) { onEvent(kind, JSON.parse(e.data)); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    armCountdowns(document);
    setInterval(tick, 250);
    var body = document.body;
    connect(body.dataset.live, function (kind, data) {
      if (kind === "slot") {
        var slot = document.getElementById("slot");
        if (slot) slot.textContent = data.slot;
      } else if (kind !== "log") {
        schedule();
      }
    });
    var logs = document.getElementById("logs");
    if (logs) {
      logs.scrollTop = logs.scrollHeight;
      connect(logs.dataset.live, function (kind, data) { if (kind === "log") appendLog(data); });
    }
  });
})();
