// Fleet pages: live state/connectivity updates over the portal websocket, the bulk selection
// bar, progress of a bulk job and the device location map. The pages work without it.
(function () {
  "use strict";

  var labels = { state: {}, connectivity: {} };

  function readLabels() {
    var node = document.getElementById("fleet-labels");
    if (node) {
      try { labels = JSON.parse(node.textContent); } catch (error) { /* keep the defaults */ }
    }
  }

  function label(kind, value) {
    return (labels[kind] && labels[kind][value]) || value.charAt(0).toUpperCase() + value.slice(1);
  }

  // --- live updates --------------------------------------------------------------------------
  function setState(holder, state) {
    holder.querySelectorAll("[data-state]").forEach(function (badge) {
      badge.className = badge.className.replace(/\bstate-[a-z]+\b/, "state-" + state);
      badge.setAttribute("data-state", state);
      badge.textContent = label("state", state);
    });
  }

  function setConnectivity(holder, connectivity) {
    holder.querySelectorAll("[data-connectivity]").forEach(function (node) {
      node.className = node.className.replace(/\bconn-[a-z]+\b/, "conn-" + connectivity);
      node.setAttribute("data-connectivity", connectivity);
      var text = node.querySelector("[data-connectivity-label]");
      if (text) { text.textContent = label("connectivity", connectivity); }
    });
  }

  function setLastSeen(holder, when) {
    holder.querySelectorAll("[data-last-seen]").forEach(function (cell) {
      var time = document.createElement("time");
      time.setAttribute("datetime", when);
      time.title = when;
      time.textContent = "just now";
      cell.replaceChildren(time);
    });
  }

  function onDevice(message) {
    var holders = document.querySelectorAll('[data-device-id="' + message.id + '"]');
    holders.forEach(function (holder) {
      if (message.type === "device.state" && message.state) { setState(holder, message.state); }
      if (message.type === "device.connectivity" && message.connectivity) {
        setConnectivity(holder, message.connectivity);
      }
      // Going offline does not move "last seen" (the message carries the stored time).
      if (message.last_seen_at && message.connectivity !== "offline") {
        setLastSeen(holder, message.last_seen_at);
      }
      holder.classList.remove("is-updated");
      void holder.offsetWidth; // restart the highlight animation
      holder.classList.add("is-updated");
    });
  }

  function onMessage(message) {
    if (message.type === "device.state" || message.type === "device.connectivity") {
      onDevice(message);
    } else if (message.type === "device.enrolled") {
      // a device enrolled zero-touch: update its row, or re-read the rows to show a new one
      if (document.querySelector('[data-device-id="' + message.id + '"]')) {
        onDevice({ type: "device.state", id: message.id, state: message.state });
      } else { refreshRows(); }
    } else if (message.type === "job.progress") {
      showJob(message);
    }
  }

  function connect(delay) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/live/");
    socket.addEventListener("open", function () {
      delay = 1000;
      // Messages sent while the socket was down are lost: re-read the rows after a reconnect.
      if (document.body.getAttribute("data-live") === "closed") { refreshRows(); }
      document.body.setAttribute("data-live", "open");
    });
    socket.addEventListener("message", function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      // A worker coalesces its changes into one {"type": "batch", "messages": [...]} push.
      (message.type === "batch" ? message.messages || [] : [message]).forEach(onMessage);
    });
    socket.addEventListener("close", function (event) {
      document.body.setAttribute("data-live", "closed");
      if (event.code === 4401 || event.code === 4403) { return; } // signed out: do not retry
      window.setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay);
    });
  }

  // --- bulk selection ------------------------------------------------------------------------
  function bulk() {
    var form = document.getElementById("bulk-form");
    if (!form) { return; }
    var count = form.querySelector("[data-selected-count]");
    var apply = document.getElementById("bulk-apply");
    var all = form.querySelector("[data-select-all]");
    function boxes() { return form.querySelectorAll("input[name=devices]"); }
    function refresh() {
      var selected = form.querySelectorAll("input[name=devices]:checked").length;
      if (count) { count.textContent = selected + " selected"; }
      if (apply) { apply.disabled = selected === 0; }
      if (all) {
        all.checked = selected > 0 && selected === boxes().length;
        all.indeterminate = selected > 0 && selected < boxes().length;
      }
    }
    form.addEventListener("change", function (event) {
      if (event.target.matches("[data-select-all]")) {
        boxes().forEach(function (box) { box.checked = event.target.checked; });
      }
      refresh();
    });
    refresh();
  }

  // --- bulk job progress ---------------------------------------------------------------------
  var FINISHED = ["succeeded", "partial", "failed", "cancelled"];
  var STATUS_LABELS = {
    queued: "Queued", running: "Running", succeeded: "Succeeded",
    partial: "Finished with errors", failed: "Failed", cancelled: "Cancelled"
  };

  function showJob(job) {
    var panel = document.getElementById("fleet-job");
    if (!panel || panel.getAttribute("data-job-id") !== String(job.id)) { return; }
    var total = job.total || 0;
    var percent = total ? Math.round((100 * job.processed) / total) : 0;
    if (FINISHED.indexOf(job.status) >= 0) { percent = 100; }
    panel.querySelector("[data-job-bar]").style.width = percent + "%";
    panel.querySelector("[data-job-status]").textContent = STATUS_LABELS[job.status] || job.status;
    panel.querySelector("[data-job-counts]").textContent = job.processed + " of " + total +
      " processed · " + job.succeeded + " succeeded · " + job.failed + " failed";
    var before = panel.getAttribute("data-job-state");
    panel.setAttribute("data-job-state", job.status);
    if (FINISHED.indexOf(job.status) >= 0 && FINISHED.indexOf(before) < 0) { refreshRows(); }
  }

  // A bulk job changes many rows at once and pushes no message per device: re-read the page's
  // rows and state counts once it has finished (no reload; filters and cursor are kept).
  function refreshRows() {
    if (!document.getElementById("fleet-rows")) { return; }
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ["fleet-rows", "state-counts"].forEach(function (id) {
          var current = document.getElementById(id);
          var replacement = fresh.getElementById(id);
          if (current && replacement) { current.innerHTML = replacement.innerHTML; }
        });
        var empty = !document.querySelector("#fleet-rows [data-device-id]");
        var table = document.getElementById("fleet-table");
        var note = document.getElementById("fleet-empty");
        if (table) { table.hidden = empty; }
        if (note) { note.hidden = !empty; }
        var form = document.getElementById("bulk-form");
        if (form) { form.dispatchEvent(new Event("change")); }
        document.body.setAttribute("data-rows-refreshed", "true");
      });
  }

  function pollJob() {
    var panel = document.getElementById("fleet-job");
    if (!panel) { return; }
    var url = panel.getAttribute("data-job-api");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (job) {
          if (!job) { return; } // no job API: live pushes still update the panel
          showJob(job);
          if (FINISHED.indexOf(job.status) < 0) { window.setTimeout(tick, 2000); }
        })
        .catch(function () { window.setTimeout(tick, 5000); });
    }
    tick();
  }

  // --- location map --------------------------------------------------------------------------
  function map() {
    var node = document.getElementById("device-map");
    if (!node || !window.L) { return; }
    var point = [parseFloat(node.getAttribute("data-lat")), parseFloat(node.getAttribute("data-lon"))];
    var view = window.L.map(node, { scrollWheelZoom: false, attributionControl: false });
    view.setView(point, 13);
    var tiles = node.getAttribute("data-tiles");
    if (tiles) { window.L.tileLayer(tiles, { maxZoom: 19 }).addTo(view); }
    window.L.marker(point, { title: node.getAttribute("data-label") || "" }).addTo(view);
  }

  document.addEventListener("DOMContentLoaded", function () {
    readLabels();
    bulk();
    map();
    pollJob();
    if (document.querySelector("[data-device-id], #fleet-job, #fleet-rows") && "WebSocket" in window) {
      connect(1000);
    }
  });
})();
