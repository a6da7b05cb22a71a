// Health badges follow live connectivity changes: fleet.js moves a row's (or the device page
// header's) [data-connectivity] when the websocket says so; the badge then shows "Offline", or,
// back online, the health its open alerts give (data-health-alerts, rendered by the server).
(function () {
  "use strict";

  var LABELS = { ok: "OK", warning: "Warning", critical: "Critical", offline: "Offline", unknown: "Unknown" };

  function show(badge, health) {
    if (badge.getAttribute("data-health") === health) { return; }
    badge.className = badge.className.replace(/\bhealth-[a-z]+\b/, "health-" + health);
    badge.setAttribute("data-health", health);
    badge.textContent = LABELS[health] || health;
  }

  function follow(node) {
    var holder = node.closest("[data-device-id]");
    var connectivity = node.getAttribute("data-connectivity");
    if (!holder || (connectivity !== "online" && connectivity !== "offline")) { return; }
    var selector = '[data-health-of="' + holder.getAttribute("data-device-id") + '"]';
    document.querySelectorAll(selector).forEach(function (badge) {
      show(badge, connectivity === "offline" ? "offline" : badge.getAttribute("data-health-alerts") || "ok");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!("MutationObserver" in window)) { return; }
    new MutationObserver(function (records) {
      records.forEach(function (record) { follow(record.target); });
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-connectivity"] });
  });
})();
