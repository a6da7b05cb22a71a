// Command progress page: counts by status from ``commands.progress`` pushes on /ws/live/, and
// from the API every few seconds when the socket is away. The page works without it.
(function () {
  "use strict";

  var root = document.getElementById("cmd-progress");
  if (!root) { return; }
  var requestId = root.getAttribute("data-request"), api = root.getAttribute("data-api");
  var channel = document.getElementById("cmd-channel");

  function show(counts) {
    var total = counts.total || 0;
    Object.keys(counts).forEach(function (status) {
      var value = root.querySelector('[data-count="' + status + '"]');
      if (value) { value.textContent = counts[status]; }
      var bar = root.querySelector('[data-bar="' + status + '"]');
      if (bar) { bar.style.width = (total ? (100 * counts[status] / total) : 0) + "%"; }
    });
  }

  function poll() {
    fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { show(data.counts); } })
      .catch(function () {});
  }

  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  try {
    var socket = new WebSocket(scheme + window.location.host + "/ws/live/");
    socket.onopen = function () { channel.textContent = "live"; };
    socket.onclose = function () { channel.textContent = "polling"; };
    socket.onmessage = function (event) {
      var data = JSON.parse(event.data);
      if (data.type === "commands.progress" && data.request === requestId) { show(data.counts); }
    };
  } catch (error) { /* polling only */ }
  window.setInterval(poll, 5000);
})();
