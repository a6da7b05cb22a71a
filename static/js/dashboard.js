// Fleet dashboard: the device location map. The server gathers located devices into grid cells
// sized for the zoom level (a capped number of markers, each with its device count and a ring
// showing the share online); the map asks again for its view after every pan or zoom.
(function () {
  "use strict";

  function icon(cell) {
    var size = Math.round(26 + Math.min(22, Math.log2(cell.devices) * 5));
    var online = cell.devices ? Math.round((100 * cell.online) / cell.devices) : 0;
    var ring = document.createElement("span");
    ring.className = "map-cell" + (cell.devices === 1 ? " map-cell-one" : "");
    ring.style.setProperty("--online", online + "%");
    ring.style.width = ring.style.height = size + "px";
    var count = document.createElement("span");
    count.textContent = cell.devices > 1 ? String(cell.devices) : "";
    ring.appendChild(count);
    return window.L.divIcon({ className: "map-cell-icon", html: ring, iconSize: [size, size] });
  }

  function FleetMap(node) {
    this.node = node;
    this.url = node.getAttribute("data-url");
    this.summary = document.querySelector("[data-map-summary]");
    this.map = window.L.map(node, { scrollWheelZoom: false, attributionControl: false,
      worldCopyJump: true, minZoom: 0 });
    var tiles = node.getAttribute("data-tiles");
    if (tiles) { window.L.tileLayer(tiles, { maxZoom: 19 }).addTo(this.map); }
    this.layer = window.L.layerGroup().addTo(this.map);
    this.request = 0;
    this.fetch("", true);
  }

  FleetMap.prototype.fetch = function (query, first) {
    var self = this, request = ++this.request;
    fetch(this.url + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (!answer || request !== self.request) { return; }
        if (first) { self.frame(answer); }
        self.draw(answer.cells);
      });
  };

  FleetMap.prototype.frame = function (answer) {
    var self = this;
    if (answer.extent) {
      var e = answer.extent;
      this.map.fitBounds([[e[0], e[1]], [e[2], e[3]]], { padding: [36, 36], maxZoom: 12 });
    } else {
      this.map.setView([25, 10], 1);
    }
    var located = answer.cells.reduce(function (sum, cell) { return sum + cell.devices; }, 0);
    if (this.summary) {
      this.summary.textContent = located ? located + " located device" + (located === 1 ? "" : "s")
        : "No device has a location yet";
    }
    this.node.setAttribute("data-located", String(located));
    // later views ask for their own cells (after the framing above has settled)
    window.setTimeout(function () {
      self.map.on("moveend", function () { self.refresh(); });
      self.refresh();
    }, 0);
  };

  FleetMap.prototype.refresh = function () {
    var b = this.map.getBounds().pad(0.2);
    var box = [b.getSouth(), b.getWest(), b.getNorth(), b.getEast()].map(function (value) {
      return value.toFixed(5);
    });
    this.fetch("?zoom=" + this.map.getZoom() + "&bbox=" + box.join(","), false);
  };

  FleetMap.prototype.draw = function (cells) {
    var layer = this.layer;
    layer.clearLayers();
    cells.forEach(function (cell) {
      var marker = window.L.marker([cell.lat, cell.lon], { icon: icon(cell), title: cell.label,
        riseOnHover: true });
      marker.bindTooltip(cell.label + " · " + cell.online + " online", { direction: "top",
        offset: [0, -12] });
      if (cell.url) { marker.on("click", function () { window.location.href = cell.url; }); }
      layer.addLayer(marker);
    });
    this.node.setAttribute("data-markers", String(cells.length));
  };

  document.addEventListener("DOMContentLoaded", function () {
    var node = document.getElementById("fleet-map");
    if (node && window.L) { node.fleetMap = new FleetMap(node); }
  });
})();
